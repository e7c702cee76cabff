# Stub declarations of the NixOS options hyperhive's modules set, and a stub
# `pkgs`, so the modules evaluate with nothing but nixpkgs' lib (the vendored
# copy) and nix-instantiate. Types follow NixOS's where the modules rely on
# their merging (lists concatenate, attrsets merge).
{ lib }:
let
  inherit (lib) mkOption types;
  drv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  # pkgs.formats.toml's type, as in nixpkgs pkgs/pkgs-lib/formats.nix.
  tomlType =
    let
      valueType =
        types.oneOf [
          types.bool
          types.int
          types.float
          types.str
          types.path
          (types.attrsOf valueType)
          (types.listOf valueType)
        ]
        // {
          description = "TOML value";
        };
    in
    valueType;
  unitOptions = {
    options = {
      description = mkOption {
        type = types.str;
        default = "";
      };
      wantedBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      after = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      requires = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      environment = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
      serviceConfig = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      unitConfig = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
    };
  };
  opt =
    type: default:
    mkOption {
      inherit type default;
    };
in
{
  inherit drv;

  pkgs = {
    formats.toml =
      { }:
      {
        type = tomlType;
        # The value is kept so the test can render and load it.
        generate = name: value: drv name // { tomlValue = value; };
      };
    git = drv "git";
    claude-code = drv "claude-code";
    ripgrep = drv "ripgrep";
    python3Packages.numpy = drv "python3.12-numpy";
    callPackage = _fn: args: drv "hyperhive" // { rev = args.rev or null; };
  };

  module = {
    options = {
      assertions = opt (types.listOf types.unspecified) [ ];
      warnings = opt (types.listOf types.str) [ ];
      boot.enableContainers = opt types.bool true;
      boot.isContainer = opt types.bool false;
      system.stateVersion = opt types.str "25.05";
      nix.settings.experimental-features = opt (types.listOf types.str) [ ];
      nixpkgs.hostPlatform = opt types.str "x86_64-linux";
      nixpkgs.config = opt (types.attrsOf types.anything) { };
      environment.systemPackages = opt (types.listOf types.package) [ ];
      networking.hostName = opt types.str "nixos";
      networking.useDHCP = opt types.bool true;
      networking.useHostResolvConf = opt types.bool false;
      networking.firewall.enable = opt types.bool true;
      networking.firewall.allowedTCPPorts = opt (types.listOf types.port) [ ];
      networking.firewall.allowedTCPPortRanges = opt (types.listOf (types.attrsOf types.port)) [ ];
      systemd.tmpfiles.rules = opt (types.listOf types.str) [ ];
      systemd.services = opt (types.attrsOf (types.submodule unitOptions)) { };
    };
  };
}
