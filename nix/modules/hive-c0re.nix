# services.hive-c0re: the hyperhive host — hive-broker and hive-c0re as
# systemd units, every agent a nixos-container built from a per-agent flake.
#
# The flake's nixosModules.hive-c0re imports this file and sets `package` and
# `flakeSource` to its own; imported on its own (as the tests do) both must be
# set by the importer.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkEnableOption
    mkOption
    mkIf
    mkDefault
    types
    ;

  cfg = config.services.hive-c0re;
  settingsFormat = pkgs.formats.toml { };
  configFile = settingsFormat.generate "hyperhive.toml" cfg.settings;

  # nixos-container keeps imperative containers' conf files here; NixOS moved
  # them from /etc/containers with system.stateVersion 22.05.
  containerConfDir =
    if lib.versionAtLeast config.system.stateVersion "22.05" then
      "/etc/nixos-containers"
    else
      "/etc/containers";
  containerStateDir =
    if lib.versionAtLeast config.system.stateVersion "22.05" then
      "/var/lib/nixos-containers"
    else
      "/var/lib/containers";

  loopback = [
    "127.0.0.1"
    "::1"
    "localhost"
  ];
  # EXTRA_NSPAWN_FLAGS is split on whitespace and globbed by the container
  # unit's shell, so every path bound into a container must be plain.
  plainPath = p: builtins.match "/[A-Za-z0-9._/+-]*" p != null;
  underDir =
    dir: p:
    lib.hasPrefix "${dir}/" p && p != "${dir}/" && plainPath p && !lib.hasInfix "/../" "${p}/";

  pathFlags = [
    "--run-dir"
    cfg.runDir
    "--state-dir"
    cfg.stateDir
    "--config"
    configFile
  ];

  # Shared by both daemons. Each line is either harmless for nixos-container
  # or the reason it is left out is written next to it in hardeningC0re.
  hardeningCommon = {
    UMask = "0077";
    NoNewPrivileges = true;
    PrivateTmp = true;
    ProtectHome = true;
    ProtectSystem = "strict";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    SystemCallArchitectures = "native";
    # Both daemons are root: the containers run as root and the sockets are
    # 0600 root. The state and run dirs are created here, with these modes.
    StateDirectory = lib.removePrefix "/var/lib/" cfg.stateDir;
    StateDirectoryMode = "0700";
    RuntimeDirectory = lib.removePrefix "/run/" cfg.runDir;
    RuntimeDirectoryMode = "0700";
    # The socket dirs are bind-mounted into running containers: a restart
    # must not delete and re-create them, or the containers keep dead dirs.
    RuntimeDirectoryPreserve = "yes";
    Restart = "on-failure";
    RestartSec = "5s";
  };
in
{
  options.services.hive-c0re = {
    enable = mkEnableOption "hyperhive (hive-broker and hive-c0re, agents as nixos-containers)";

    package = mkOption {
      type = types.package;
      defaultText = lib.literalExpression "hyperhive.packages.\${system}.default";
      description = "The hyperhive package (set by the flake's nixosModules.hive-c0re).";
    };

    flakeSource = mkOption {
      type = types.str;
      defaultText = lib.literalExpression "hyperhive.outPath";
      description = ''
        The hyperhive flake source the per-agent flakes take as their
        `hyperhive` input (a `path:` input, so they lock offline). The
        flake's module sets it to its own source.
      '';
    };

    stateDir = mkOption {
      type = types.str;
      default = "/var/lib/hyperhive";
      description = "STATE: the desired-state repos, databases and the agents' state. Must lie under /var/lib.";
    };

    runDir = mkOption {
      type = types.str;
      default = "/run/hyperhive";
      description = "RUN: host.sock, broker.sock and the agents' socket dirs. Must lie under /run.";
    };

    dashboard = {
      listenAddress = mkOption {
        type = types.str;
        default = "127.0.0.1";
        description = "Address of the dashboard and the agents' web UIs. Anything but loopback needs passwordFile.";
      };
      port = mkOption {
        type = types.port;
        default = 7000;
        description = "Port of the dashboard.";
      };
      passwordFile = mkOption {
        type = types.nullOr types.externalPath;
        default = null;
        example = "/run/secrets/hyperhive-dashboard";
        description = ''
          File holding the operator password for /login (read by hive-c0re at
          start; never copied into the Nix store). Required for a
          non-loopback listenAddress.
        '';
      };
    };

    environmentFile = mkOption {
      type = types.nullOr types.externalPath;
      default = null;
      example = "/run/secrets/hyperhive.env";
      description = ''
        EnvironmentFile= of hive-c0re: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL
        and CLAUDE_CODE_* set here are passed on to every agent (without
        them, the operator logs each agent in through its web UI). Read at
        start, never copied into the Nix store.
      '';
    };

    autoUpdate = mkOption {
      type = types.bool;
      default = true;
      description = "Rebuild agents whose container was built from another hyperhive rev.";
    };

    manager.enable = mkOption {
      type = types.bool;
      default = true;
      description = "Keep the manager agent hm1nd in applied (re-created without approval when missing).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the dashboard port and the agents' web UI ports (8000, 8100-8999).";
    };

    settings = mkOption {
      type = types.submodule {
        freeformType = settingsFormat.type;
        options = {
          broker = mkOption {
            type = settingsFormat.type;
            default = { };
            description = "The [broker] section (e.g. lease_seconds).";
          };
          c0re = mkOption {
            type = settingsFormat.type;
            default = { };
            description = "The [c0re] section.";
          };
          dashboard = mkOption {
            type = settingsFormat.type;
            default = { };
            description = "The [dashboard] section.";
          };
        };
      };
      default = { };
      description = ''
        The TOML file both daemons read with `--config`. The options above
        fill their keys (with mkDefault); anything set here wins.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = builtins.elem cfg.dashboard.listenAddress loopback || cfg.dashboard.passwordFile != null;
        message = ''
          services.hive-c0re.dashboard.listenAddress = "${cfg.dashboard.listenAddress}" is not loopback:
          set services.hive-c0re.dashboard.passwordFile, or every machine that reaches the port
          (and every agent, they share the host's network) could approve changes.
        '';
      }
      {
        assertion = cfg.dashboard.passwordFile == null || !lib.hasPrefix builtins.storeDir (toString cfg.dashboard.passwordFile);
        message = "services.hive-c0re.dashboard.passwordFile must not be in the Nix store (it is world-readable there); give a path such as /run/secrets/….";
      }
      {
        assertion = cfg.environmentFile == null || !lib.hasPrefix builtins.storeDir (toString cfg.environmentFile);
        message = "services.hive-c0re.environmentFile must not be in the Nix store (it holds credentials).";
      }
      {
        assertion = underDir "/var/lib" cfg.stateDir;
        message = ''services.hive-c0re.stateDir = "${cfg.stateDir}" must be a plain path under /var/lib/ (systemd StateDirectory=, and no spaces or glob characters: it is bound into containers through EXTRA_NSPAWN_FLAGS).'';
      }
      {
        assertion = underDir "/run" cfg.runDir;
        message = ''services.hive-c0re.runDir = "${cfg.runDir}" must be a plain path under /run/ (systemd RuntimeDirectory=, and no spaces or glob characters: it is bound into containers through EXTRA_NSPAWN_FLAGS).'';
      }
      {
        assertion = config.boot.enableContainers;
        message = "services.hive-c0re runs every agent as a nixos-container: boot.enableContainers must be true.";
      }
    ];

    # The settings the options above stand for; `settings` given by the
    # operator override them.
    services.hive-c0re.settings = {
      c0re = {
        runtime = mkDefault "nixos-container";
        auto_update = mkDefault cfg.autoUpdate;
        manager = mkDefault cfg.manager.enable;
      };
      dashboard = {
        listen = mkDefault cfg.dashboard.listenAddress;
        port = mkDefault cfg.dashboard.port;
      }
      // lib.optionalAttrs (cfg.dashboard.passwordFile != null) {
        password_file = mkDefault (toString cfg.dashboard.passwordFile);
      };
    };

    boot.enableContainers = mkDefault true;
    # nixos-container builds the per-agent flakes with `nix build`.
    nix.settings.experimental-features = [
      "nix-command"
      "flakes"
    ];

    # The CLI for the operator (`hive-c0re status`, `approve`, …).
    environment.systemPackages = [ cfg.package ];

    networking.firewall = mkIf cfg.openFirewall {
      allowedTCPPorts = [
        cfg.dashboard.port
        8000
      ];
      allowedTCPPortRanges = [
        {
          from = 8100;
          to = 8999;
        }
      ];
    };

    # ReadWritePaths= of hive-c0re must exist when the unit starts.
    systemd.tmpfiles.rules = [
      "d ${containerConfDir} 0755 root root -"
      "d ${containerStateDir} 0700 root root -"
      "d /run/systemd/system 0755 root root -"
    ];

    systemd.services.hive-broker = {
      description = "hyperhive message broker";
      wantedBy = [ "multi-user.target" ];
      restartTriggers = [ configFile ];
      serviceConfig = hardeningCommon // {
        ExecStart = lib.escapeShellArgs ([ "${cfg.package}/bin/hive-broker" "serve" ] ++ pathFlags);
        # Unix sockets only: no network at all, and no capabilities (root
        # still owns every file it needs).
        PrivateNetwork = true;
        RestrictAddressFamilies = [ "AF_UNIX" ];
        CapabilityBoundingSet = "";
        PrivateDevices = true;
        MemoryDenyWriteExecute = true;
        RestrictNamespaces = true;
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
        ReadWritePaths = [
          cfg.stateDir
          cfg.runDir
        ];
      };
    };

    systemd.services.hive-c0re = {
      description = "hyperhive reconciler and dashboard";
      wantedBy = [ "multi-user.target" ];
      after = [
        "hive-broker.service"
        "network.target"
      ];
      requires = [ "hive-broker.service" ];
      restartTriggers = [ configFile ];
      # nixos-container, systemctl, machinectl and nix come from the system
      # profile: the host's nixos-container is built for its stateVersion.
      path = [
        "/run/current-system/sw"
        pkgs.git
      ];
      environment = {
        # Builds go through the nix daemon (its sandbox, its substituters).
        NIX_REMOTE = "daemon";
        # ProtectHome= hides /root: nix keeps its fetcher and eval caches here.
        XDG_CACHE_HOME = "/var/cache/hyperhive";
        HYPERHIVE_PACKAGE_SOURCE = cfg.flakeSource;
        HYPERHIVE_CONTAINER_CONF_DIR = containerConfDir;
        # /etc/systemd/system is read-only on NixOS; runtime drop-ins for the
        # resource limits go under /run and are rewritten on every start.
        HYPERHIVE_SYSTEMD_DROPIN_DIR = "/run/systemd/system";
      };
      serviceConfig = hardeningCommon // {
        ExecStart = lib.escapeShellArgs (
          [ "${cfg.package}/bin/hive-c0re" "serve" ]
          ++ pathFlags
          ++ [
            "--runtime"
            "nixos-container"
          ]
        );
        # Containers are their own units (container@h-<name>.service in
        # machine.slice), never children of hive-c0re: stopping or restarting
        # hive-c0re leaves them running. `mixed` lets c0re stop its in-flight
        # nixos-container calls itself (SIGTERM to the main process), then
        # systemd kills what is left.
        KillMode = "mixed";
        TimeoutStopSec = "30s";
        CacheDirectory = "hyperhive";
        CacheDirectoryMode = "0700";
        EnvironmentFile = lib.optional (cfg.environmentFile != null) (toString cfg.environmentFile);
        # Not set, because nixos-container needs them:
        # - CapabilityBoundingSet: destroy runs umount (CAP_SYS_ADMIN), chattr -i
        #   (CAP_LINUX_IMMUTABLE) and removes files of container users
        #   (CAP_DAC_OVERRIDE, CAP_FOWNER).
        # - PrivateDevices / PrivateNetwork / RestrictNamespaces: nix may
        #   evaluate and fetch, dashboards listen on TCP.
        # - MemoryDenyWriteExecute: cffi (pygit2) needs writable+executable pages.
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
          "AF_NETLINK"
        ];
        # ProtectSystem=strict leaves only these writable: its own dirs, the
        # containers' conf files and roots, nix's profiles and GC roots
        # (per-container profile, the ./.tmp build link), the lock
        # nixos-container takes, and the runtime unit drop-ins.
        ReadWritePaths = [
          cfg.stateDir
          cfg.runDir
          containerConfDir
          containerStateDir
          "/nix/var/nix"
          "/run/lock"
          "/run/systemd/system"
        ];
      };
    };
  };
}
