# The NixOS configuration of one agent's container (imported by every
# per-agent flake as hyperhive.nixosModules.agent).
#
# Everything about the agent arrives as data: `services.hive-agent.spec` is
# `builtins.fromJSON (builtins.readFile ./spec.json)` in the per-agent flake,
# never Nix source written by c0re. The binds (/run/hive, /state,
# /root/.claude, hm1nd's /agents) are made by c0re in the container's conf
# file, not here: this module only expects them.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption mkDefault types;

  cfg = config.services.hive-agent;
  spec = cfg.spec;
  isManager = spec.role == "manager";

  # spec.packages are nixpkgs attribute paths such as "ripgrep" or
  # "python3Packages.numpy"; the same rule is checked by c0re before it
  # writes spec.json.
  attrPathRe = "[A-Za-z_][A-Za-z0-9_'-]*(\\.[A-Za-z_][A-Za-z0-9_'-]*)*";
  lookupPackage =
    name:
    if builtins.match attrPathRe name == null then
      throw "hyperhive agent ${spec.name}: spec.packages entry ${builtins.toJSON name} is not a nixpkgs attribute name"
    else
      lib.attrByPath (lib.splitString "." name) (throw "hyperhive agent ${spec.name}: nixpkgs has no package ${builtins.toJSON name} (spec.packages)") pkgs;
  extraPackages = map lookupPackage (spec.spec.packages or [ ]);

  command = if isManager then "hive-m1nd" else "hive-ag3nt";
in
{
  options.services.hive-agent = {
    spec = mkOption {
      type = types.attrsOf types.anything;
      description = ''
        The agent as c0re recorded it in spec.json: name, role, spec (the
        validated `spec:` mapping), web_port, hyperhiveRev, configHash,
        system.
      '';
    };

    package = mkOption {
      type = types.package;
      defaultText = lib.literalExpression "hyperhive's package, built with rev = spec.hyperhiveRev";
      description = "The hyperhive package providing hive-ag3nt / hive-m1nd (set by the flake's nixosModules.agent).";
    };

    claudePackage = mkOption {
      type = types.package;
      default = pkgs.claude-code;
      defaultText = lib.literalExpression "pkgs.claude-code";
      description = "The Claude Code CLI the harness runs.";
    };
  };

  config = {
    assertions = [
      {
        assertion = builtins.match "[a-z][a-z0-9-]{0,8}" spec.name != null;
        message = "hyperhive agent: invalid name ${builtins.toJSON spec.name} in spec.json";
      }
      {
        assertion = builtins.elem spec.role [
          "agent"
          "manager"
        ];
        message = "hyperhive agent ${spec.name}: role must be agent or manager";
      }
    ];

    boot.isContainer = true;
    networking.hostName = mkDefault "h-${spec.name}";
    # The container shares the host's network namespace (PRIVATE_NETWORK=0):
    # it must not touch interfaces, DHCP or the host's netfilter rules.
    networking.useDHCP = false;
    networking.firewall.enable = false;
    networking.useHostResolvConf = mkDefault true;
    system.stateVersion = mkDefault lib.trivial.release;

    # claude-code is unfree; allow exactly that package.
    nixpkgs.config.allowUnfreePredicate = pkg: lib.getName pkg == "claude-code";

    environment.systemPackages = [
      cfg.package
      cfg.claudePackage
      pkgs.git
    ]
    ++ extraPackages;

    systemd.services.hive-agent = {
      description = "hyperhive harness of ${spec.name}";
      wantedBy = [ "multi-user.target" ];
      # The binds come from the container's nspawn flags; wait for them.
      unitConfig.RequiresMountsFor = [
        "/run/hive"
        "/state"
        "/root/.claude"
      ]
      ++ lib.optional isManager "/agents";
      # A new spec (model, prompt, …) switches config and restarts the harness.
      restartTriggers = [ (spec.configHash or "") ];
      path = [
        cfg.package
        cfg.claudePackage
        pkgs.git
      ]
      ++ extraPackages;
      # The environment contract every runtime sets (DESIGN §10).
      environment = {
        HIVE_AGENT = spec.name;
        HIVE_SOCKET_DIR = "/run/hive";
        HIVE_STATE_DIR = "/state";
        CLAUDE_CONFIG_DIR = "/root/.claude";
        HOME = "/root";
      };
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/${command} serve";
        # Credentials (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, CLAUDE_CODE_*)
        # are written by c0re into the agent's own state dir, never into the
        # store; missing is fine (the operator logs in through the web UI).
        EnvironmentFile = "-/state/.hive-env";
        WorkingDirectory = if isManager then "/agents" else "/state";
        Restart = "always";
        RestartSec = "2s";
        KillMode = "mixed";
      };
    };
  };
}
