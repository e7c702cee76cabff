# A NixOS host running hyperhive: the three lines of docs/nixos.md.
#
#   nixos-rebuild switch --flake .#hive
{
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # No `hyperhive.inputs.nixpkgs.follows` on purpose: the agents' flakes
    # take hyperhive's own flake.lock for nixpkgs, so the host's package and
    # the containers are built from the same nixpkgs (see docs/nixos.md).
    hyperhive.url = "github:hyperhive/hyperhive";
  };

  outputs =
    { nixpkgs, hyperhive, ... }:
    {
      nixosConfigurations.hive = nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          ./hardware-configuration.nix
          hyperhive.nixosModules.hive-c0re
          {
            services.hive-c0re.enable = true;

            # Everything below is optional.
            # services.hive-c0re.dashboard.listenAddress = "0.0.0.0";
            # services.hive-c0re.dashboard.passwordFile = "/run/secrets/hyperhive-dashboard";
            # services.hive-c0re.openFirewall = true;
            # services.hive-c0re.settings.broker.lease_seconds = 900;

            system.stateVersion = "25.05";
          }
        ];
      };
    };
}
