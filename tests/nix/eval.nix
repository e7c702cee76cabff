# Evaluate hyperhive's NixOS modules with the real module system and the
# stubs, and return what the tests assert on as JSON.
#
#   nix-instantiate --eval --strict --json tests/nix/eval.nix \
#     --arg lib <path to nixpkgs lib> --arg root <repo> \
#     --argstr which hive-c0re --argstr configJson '{...}'
{
  lib,
  root,
  which,
  configJson ? "{}",
  flakeDir ? null,
}:
let
  lib' = import lib;
  stubs = import ./stubs.nix { lib = lib'; };
  # The real flake.nix outputs, with nixpkgs replaced by its lib and the stubs.
  flake = import (root + "/flake.nix");
  self =
    flake.outputs {
      inherit self;
      nixpkgs = {
        lib = lib';
        legacyPackages = { };
      };
    }
    // {
      outPath = "/nix/store/11111111111111111111111111111111-source";
      rev = "0123456789abcdef0123456789abcdef01234567";
    };
  userConfig = builtins.fromJSON configJson;

  evalWith =
    modules:
    (lib'.evalModules {
      modules = [
        stubs.module
        { _module.args.pkgs = stubs.pkgs; }
      ]
      ++ modules;
    }).config;

  units =
    config:
    lib'.mapAttrs (_: u: {
      inherit (u)
        description
        wantedBy
        after
        requires
        environment
        serviceConfig
        unitConfig
        ;
      path = map toString u.path;
      restartTriggers = map toString u.restartTriggers;
    }) config.systemd.services;
  failed = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);

  hiveC0re =
    let
      config = evalWith [
        self.nixosModules.hive-c0re
        userConfig
      ];
      cfg = config.services.hive-c0re;
    in
    {
      failedAssertions = failed config;
      units = units config;
      settings = cfg.settings;
      package = toString cfg.package;
      packageRev = cfg.package.rev;
      flakeSource = cfg.flakeSource;
      tmpfiles = config.systemd.tmpfiles.rules;
      firewall = {
        inherit (config.networking.firewall) allowedTCPPorts allowedTCPPortRanges;
      };
      experimentalFeatures = config.nix.settings.experimental-features;
      systemPackages = map (p: p.name) config.environment.systemPackages;
    }
    // lib'.optionalAttrs cfg.enable (
      let
        exec = config.systemd.services.hive-c0re.serviceConfig.ExecStart;
      in
      {
        # The config file both daemons get: the stub derivation's value.
        configFile = {
          path = toString (builtins.head (
            builtins.filter (s: lib'.hasSuffix "hyperhive.toml" s) (lib'.splitString " " exec)
          ));
        };
      }
    );

  # An agent container: the per-agent flake written by c0re (its flake.nix
  # evaluated for real, with nixosSystem replaced by evalModules + stubs).
  agent =
    let
      agentFlake = import (flakeDir + "/flake.nix");
      outputs = agentFlake.outputs {
        hyperhive = self;
        nixpkgs.lib = lib' // {
          nixosSystem = args: { config = evalWith args.modules; };
        };
      };
      config = outputs.nixosConfigurations.container.config;
      cfg = config.services.hive-agent;
    in
    {
      failedAssertions = failed config;
      units = units config;
      spec = cfg.spec;
      packageRev = cfg.package.rev;
      systemPackages = map (p: p.name) config.environment.systemPackages;
      hostName = config.networking.hostName;
      firewall = config.networking.firewall.enable;
      useDHCP = config.networking.useDHCP;
      isContainer = config.boot.isContainer;
      hostPlatform = config.nixpkgs.hostPlatform;
      unfreeClaude = config.nixpkgs.config.allowUnfreePredicate { pname = "claude-code"; name = "claude-code-2.0"; };
      unfreeOther = config.nixpkgs.config.allowUnfreePredicate { pname = "other"; name = "other-1.0"; };
    };
  # nix/package.nix with buildPythonApplication returning its arguments
  # (src stays unevaluated: it would copy the tree into the store).
  package =
    let
      names = [
        "pyyaml"
        "watchfiles"
        "pygit2"
        "starlette"
        "uvicorn"
        "aiosqlite"
        "mcp"
        "jsonschema"
        "httpx"
        "sse-starlette"
        "python-multipart"
        "setuptools"
        "uvloop"
        "httptools"
      ];
      python3Packages = lib'.genAttrs names stubs.drv // {
        buildPythonApplication = args: args;
        python.sitePackages = "lib/python3.13/site-packages";
        uvicorn = stubs.drv "uvicorn" // {
          optional-dependencies.standard = [
            (stubs.drv "uvloop")
            (stubs.drv "httptools")
          ];
        };
      };
      args = import (root + "/nix/package.nix") {
        lib = lib';
        inherit python3Packages;
        rev = builtins.fromJSON configJson;
      };
    in
    {
      inherit (args) pname pyproject postInstall pythonImportsCheck;
      dependencies = map (d: d.name) args.dependencies;
      buildSystem = map (d: d.name) args.build-system;
      mainProgram = args.meta.mainProgram;
    };
  # The flake's NixOS VM test: its host node evaluates without assertion failures.
  vmtest =
    let
      test = import (root + "/nix/tests/host.nix") { inherit self; };
      config = evalWith [
        test.nodes.host
        { options.virtualisation.memorySize = lib'.mkOption { type = lib'.types.int; }; }
      ];
    in
    {
      inherit (test) name testScript;
      failedAssertions = failed config;
      units = builtins.attrNames config.systemd.services;
      enable = config.services.hive-c0re.enable;
    };
in
if which == "vmtest" then
  vmtest
else if which == "hive-c0re" then
  hiveC0re
else if which == "package" then
  package
else
  agent
