"""services.hive-c0re evaluated with nixpkgs' module system: units, config file, assertions."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from hyperhive.broker.settings import BrokerSettings
from hyperhive.config import load_config
from hyperhive.paths import Paths
from hyperhive.reconciler.daemon import options_from
from hyperhive.reconciler.dashboard.app import DashboardSettings

from .nixeval import eval_error, eval_modules


def hive(**options: Any) -> dict[str, Any]:
    return {"services": {"hive-c0re": {"enable": True, **options}}}


def toml_of(value: dict[str, dict[str, Any]]) -> str:
    """Render the settings the way json2toml does for tables of scalars and lists."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        raise TypeError(v)

    out = []
    for section, table in value.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {scalar(v)}" for k, v in table.items())
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def default() -> Any:
    return eval_modules("hive-c0re", hive())


def test_disabled_module_defines_nothing() -> None:
    out = eval_modules("hive-c0re", {})
    assert out["units"] == {}
    assert out["failedAssertions"] == []


def test_units_run_both_daemons_with_the_path_contract(default: Any) -> None:
    assert default["failedAssertions"] == []
    broker = default["units"]["hive-broker"]
    c0re = default["units"]["hive-c0re"]
    config = default["configFile"]["path"]
    assert shlex.split(broker["serviceConfig"]["ExecStart"]) == [
        f"{default['package']}/bin/hive-broker",
        "serve",
        "--run-dir",
        "/run/hyperhive",
        "--state-dir",
        "/var/lib/hyperhive",
        "--config",
        config,
    ]
    assert shlex.split(c0re["serviceConfig"]["ExecStart"]) == [
        f"{default['package']}/bin/hive-c0re",
        "serve",
        "--run-dir",
        "/run/hyperhive",
        "--state-dir",
        "/var/lib/hyperhive",
        "--config",
        config,
        "--runtime",
        "nixos-container",
    ]
    assert "hive-broker.service" in c0re["after"]
    assert c0re["requires"] == ["hive-broker.service"]
    assert "multi-user.target" in c0re["wantedBy"]
    # A changed config file restarts both daemons on switch.
    assert broker["restartTriggers"] == [config] == c0re["restartTriggers"]


def test_units_keep_state_and_sockets_across_restarts(default: Any) -> None:
    for unit in default["units"].values():
        sc = unit["serviceConfig"]
        assert sc["StateDirectory"] == "hyperhive"
        assert sc["RuntimeDirectory"] == "hyperhive"
        assert sc["RuntimeDirectoryPreserve"] == "yes"
        assert sc["Restart"] == "on-failure"
        assert sc["UMask"] == "0077"
        assert sc["ProtectSystem"] == "strict"
        assert sc["NoNewPrivileges"] is True
    # Containers are their own units; c0re's restart must not take them along.
    assert default["units"]["hive-c0re"]["serviceConfig"]["KillMode"] == "mixed"


def test_c0re_hardening_leaves_what_nixos_container_needs(default: Any) -> None:
    c0re = default["units"]["hive-c0re"]
    sc = c0re["serviceConfig"]
    writable = set(sc["ReadWritePaths"])
    assert {
        "/var/lib/hyperhive",
        "/run/hyperhive",
        "/etc/nixos-containers",
        "/var/lib/nixos-containers",
        "/nix/var/nix",
        "/run/lock",
        "/run/systemd/system",
    } <= writable
    # Every ReadWritePaths= entry must exist at start: tmpfiles creates the host ones.
    created = {rule.split()[1] for rule in default["tmpfiles"]}
    assert (
        writable - {"/var/lib/hyperhive", "/run/hyperhive", "/nix/var/nix", "/run/lock"} <= created
    )
    for needed in ("CapabilityBoundingSet", "PrivateNetwork", "RestrictNamespaces"):
        assert needed not in sc
    assert "AF_INET" in sc["RestrictAddressFamilies"]
    assert "/run/current-system/sw" in c0re["path"]
    env = c0re["environment"]
    assert env["HYPERHIVE_PACKAGE_SOURCE"] == default["flakeSource"]
    assert env["HYPERHIVE_CONTAINER_CONF_DIR"] == "/etc/nixos-containers"
    assert env["NIX_REMOTE"] == "daemon"
    # nix's caches, with /root hidden by ProtectHome=.
    assert env["XDG_CACHE_HOME"] == "/var/cache/hyperhive"
    assert sc["CacheDirectory"] == "hyperhive"
    assert default["experimentalFeatures"] == ["nix-command", "flakes"]


def test_broker_is_confined_to_unix_sockets(default: Any) -> None:
    sc = default["units"]["hive-broker"]["serviceConfig"]
    assert sc["PrivateNetwork"] is True
    assert sc["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert sc["CapabilityBoundingSet"] == ""
    assert sc["ReadWritePaths"] == ["/var/lib/hyperhive", "/run/hyperhive"]


def test_rendered_config_is_what_the_daemons_read(default: Any, tmp_path: Path) -> None:
    settings = default["settings"]
    assert settings["c0re"] == {
        "runtime": "nixos-container",
        "auto_update": True,
        "manager": True,
    }
    assert settings["dashboard"] == {"listen": "127.0.0.1", "port": 7000}
    path = tmp_path / "hyperhive.toml"
    path.write_text(toml_of(settings))
    # Parsed by the daemons' own readers, which refuse unknown keys.
    loaded = load_config(path)
    options = options_from(Paths.system(), path)
    assert options.runtime == "nixos-container"
    assert options.settings.auto_update is True
    assert options.settings.manager is True
    assert DashboardSettings.from_config(loaded["dashboard"]) == DashboardSettings(
        "127.0.0.1", 7000
    )
    assert BrokerSettings.from_config(loaded["broker"]) == BrokerSettings()


def test_options_and_settings_flow_into_the_config() -> None:
    out = eval_modules(
        "hive-c0re",
        hive(
            autoUpdate=False,
            manager={"enable": False},
            dashboard={"port": 7100, "passwordFile": "/run/secrets/dash"},
            settings={"broker": {"lease_seconds": 30}, "c0re": {"manager": True}},
        ),
    )
    assert out["failedAssertions"] == []
    s = out["settings"]
    assert s["broker"] == {"lease_seconds": 30}
    assert s["c0re"]["auto_update"] is False
    assert s["c0re"]["manager"] is True  # settings win over the option
    assert s["dashboard"] == {
        "listen": "127.0.0.1",
        "port": 7100,
        "password_file": "/run/secrets/dash",
    }
    assert out["firewall"]["allowedTCPPorts"] == []


def test_open_firewall_opens_dashboard_and_agent_ports() -> None:
    out = eval_modules("hive-c0re", hive(openFirewall=True))
    assert out["firewall"]["allowedTCPPorts"] == [7000, 8000]
    assert out["firewall"]["allowedTCPPortRanges"] == [{"from": 8100, "to": 8999}]


def test_old_state_version_uses_the_old_container_dirs() -> None:
    config = hive()
    config["system"] = {"stateVersion": "21.11"}
    out = eval_modules("hive-c0re", config)
    env = out["units"]["hive-c0re"]["environment"]
    assert env["HYPERHIVE_CONTAINER_CONF_DIR"] == "/etc/containers"
    assert "/var/lib/containers" in out["units"]["hive-c0re"]["serviceConfig"]["ReadWritePaths"]


@pytest.mark.parametrize(
    ("options", "extra", "needle"),
    [
        (
            {"dashboard": {"listenAddress": "0.0.0.0"}},
            {},
            "set services.hive-c0re.dashboard.passwordFile",
        ),
        ({"stateDir": "/srv/hive"}, {}, "must be a plain path under /var/lib/"),
        ({"stateDir": "/var/lib/hive home"}, {}, "no spaces or glob characters"),
        ({"stateDir": "/var/lib/hive*"}, {}, "no spaces or glob characters"),
        ({"runDir": "/tmp/hive"}, {}, "must be a plain path under /run/"),
        ({"runDir": "/run/../etc"}, {}, "must be a plain path under /run/"),
        ({}, {"boot": {"enableContainers": False}}, "boot.enableContainers must be true"),
    ],
)
def test_bad_settings_fire_clear_assertions(options: Any, extra: Any, needle: str) -> None:
    config = hive(**options)
    config.update(extra)
    failed = eval_modules("hive-c0re", config)["failedAssertions"]
    assert len(failed) == 1
    assert needle in failed[0]


def test_a_password_in_the_store_is_refused() -> None:
    out = eval_modules(
        "hive-c0re",
        hive(dashboard={"listenAddress": "0.0.0.0", "passwordFile": "/nix/store/abc-pw"}),
    )
    assert out["failedAssertions"] == [
        "services.hive-c0re.dashboard.passwordFile must not be in the Nix store (it is "
        "world-readable there); give a path such as /run/secrets/…."
    ]


def test_a_mistyped_option_is_an_evaluation_error() -> None:
    assert "is not of type" in eval_error("hive-c0re", hive(dashboard={"port": 99999}))


def test_non_loopback_with_password_file_is_accepted() -> None:
    out = eval_modules(
        "hive-c0re",
        hive(dashboard={"listenAddress": "0.0.0.0", "passwordFile": "/run/secrets/pw"}),
    )
    assert out["failedAssertions"] == []
    assert out["settings"]["dashboard"]["listen"] == "0.0.0.0"


def test_environment_file_passes_credentials_without_the_store() -> None:
    out = eval_modules("hive-c0re", hive(environmentFile="/run/secrets/hive.env"))
    sc = out["units"]["hive-c0re"]["serviceConfig"]
    assert sc["EnvironmentFile"] == ["/run/secrets/hive.env"]
    assert "EnvironmentFile" not in out["units"]["hive-broker"]["serviceConfig"]
    stored = eval_modules("hive-c0re", hive(environmentFile="/nix/store/abc-hive.env"))
    assert stored["failedAssertions"] == [
        "services.hive-c0re.environmentFile must not be in the Nix store (it holds credentials)."
    ]


def test_the_flakes_vm_test_host_is_the_documented_three_lines() -> None:
    out = eval_modules("vmtest")
    assert out["enable"] is True
    assert out["failedAssertions"] == []
    assert out["units"] == ["hive-broker", "hive-c0re"]
    script = out["testScript"]
    for needle in (
        'wait_for_file("/run/hyperhive/host.sock")',
        "wait_for_open_port(7000)",
        "hm1nd",
    ):
        assert needle in script
