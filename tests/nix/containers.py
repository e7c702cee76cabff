"""A fake NixOS host for the nixos-container runtime tests (tests/fakes/nixos-container)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hyperhive.paths import Paths
from hyperhive.reconciler.runtimes.base import RuntimeOptions
from hyperhive.reconciler.runtimes.nixos_container import NixosContainerRuntime
from tests.conftest import require_tool

FAKE = Path(__file__).resolve().parent.parent / "fakes" / "nixos-container"
SOURCE = Path("/nix/store/11111111111111111111111111111111-source")
#: The "harness" each fake container runs: it reports what it sees, then idles.
AGENT_SCRIPT = (
    "ls -d /run/hive /root/.claude > /state/mounts; "
    "if [ -d /agents ]; then touch /state/has-agents; fi; "
    'printf "%s %s %s\\n" "$HIVE_AGENT" "$ANTHROPIC_API_KEY" "$HIVE_STATE_DIR" > /state/hello; '
    "exec sleep 2147483647"
)


@dataclass
class FakeHost:
    root: Path
    paths: Paths
    tool_log: Path
    systemctl_log: Path
    systemctl: Path
    source: Path

    @property
    def conf_dir(self) -> Path:
        return self.root / "etc" / "nixos-containers"

    @property
    def dropin_dir(self) -> Path:
        return self.root / "run" / "systemd" / "system"

    def conf(self, name: str) -> dict[str, str]:
        out = {}
        for line in (self.conf_dir / f"h-{name}.conf").read_text().splitlines():
            key, _, value = line.partition("=")
            out[key] = value
        return out

    def calls(self) -> list[dict[str, Any]]:
        if not self.tool_log.exists():
            return []
        return [json.loads(line) for line in self.tool_log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls()]

    def leader(self, name: str) -> int | None:
        try:
            return int(
                json.loads((self.root / "run/fake-nixos-container" / f"h-{name}.json").read_text())[
                    "pid"
                ]
            )
        except (OSError, ValueError, KeyError):
            return None

    def runtime(self, **options: Any) -> NixosContainerRuntime:
        opts = RuntimeOptions(
            agent_env={"ANTHROPIC_API_KEY": 'sk-"quoted"'}, package_source=self.source, **options
        )
        return NixosContainerRuntime(
            self.paths,
            opts,
            tool=str(FAKE),
            conf_dir=self.conf_dir,
            dropin_dir=self.dropin_dir,
            systemctl=[str(self.systemctl)],
            system="x86_64-linux",
            poll_interval=0.05,
        )

    def stop_all(self) -> None:
        """Stop every fake container still running (they are the suite's children)."""
        for conf in sorted(self.conf_dir.glob("*.conf")) if self.conf_dir.exists() else []:
            subprocess.run([str(FAKE), "stop", conf.stem], check=False, capture_output=True)


def make_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    require_tool("bwrap")
    require_tool("nix-instantiate")
    root = tmp_path / "host"
    root.mkdir()
    systemctl_log = tmp_path / "systemctl.log"
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >> {systemctl_log}\n')
    systemctl.chmod(0o755)
    tool_log = tmp_path / "nixos-container.log"
    monkeypatch.setenv("FAKE_NIXOS_CONTAINER_ROOT", str(root))
    monkeypatch.setenv("FAKE_NIXOS_CONTAINER_LOG", str(tool_log))
    monkeypatch.setenv("FAKE_NIXOS_CONTAINER_COMMAND", json.dumps(["/bin/sh", "-c", AGENT_SCRIPT]))
    monkeypatch.delenv("FAKE_NIXOS_CONTAINER_FAIL", raising=False)
    monkeypatch.delenv("HYPERHIVE_PACKAGE_SOURCE", raising=False)
    # A stand-in for the hyperhive flake source (only its path reaches the agents' flakes).
    source = tmp_path / "source"
    source.mkdir()
    (source / "flake.nix").write_text("{ outputs = _: { }; }\n")
    paths = Paths.from_home(tmp_path / "hive")
    os.makedirs(paths.state, exist_ok=True)
    return FakeHost(root, paths, tool_log, systemctl_log, systemctl, source)
