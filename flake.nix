{
  description = "hyperhive: many Claude Code agents in nixos-containers, declared in git, converged by a reconcile loop";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # Baked into the package as BUILD_REV; per-agent flakes take this source
      # as a path: input (no rev of its own) and pass c0re's recorded rev.
      rev = self.rev or self.dirtyRev or "unknown";
      mkPackage = pkgs: rev: pkgs.callPackage ./nix/package.nix { inherit rev; };
    in
    {
      packages = forAllSystems (pkgs: {
        default = mkPackage pkgs rev;
      });

      overlays.default = final: _prev: { hyperhive = mkPackage final rev; };

      nixosModules = {
        hive-c0re =
          { lib, pkgs, ... }:
          {
            imports = [ ./nix/modules/hive-c0re.nix ];
            services.hive-c0re = {
              package = lib.mkDefault (mkPackage pkgs rev);
              flakeSource = lib.mkDefault self.outPath;
            };
          };
        default = self.nixosModules.hive-c0re;

        agent =
          { config, lib, pkgs, ... }:
          {
            imports = [ ./nix/modules/agent.nix ];
            # Built with the rev c0re recorded, so the harness reports the
            # same hyperhive_rev as the c0re that built it.
            services.hive-agent.package = lib.mkDefault (
              mkPackage pkgs (config.services.hive-agent.spec.hyperhiveRev or rev)
            );
          };
      };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.python3Packages.pytest
            pkgs.python3Packages.pytest-asyncio
            pkgs.python3Packages.hypothesis
            pkgs.ruff
            pkgs.mypy
            pkgs.bubblewrap
            pkgs.nixfmt
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);

      checks = forAllSystems (
        pkgs:
        {
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        }
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          nixos = pkgs.testers.runNixOSTest (import ./nix/tests/host.nix { inherit self; });
        }
      );
    };
}
