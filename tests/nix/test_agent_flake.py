"""Per-agent flakes: they parse, carry the spec only as data, and build the agent module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperhive.reconciler.runtimes.base import Desired
from hyperhive.reconciler.runtimes.flake import (
    FlakeError,
    flake_ref,
    nix_system,
    read_spec,
    render_flake,
    spec_document,
    write_flake,
)

from .nixeval import eval_error, eval_json, eval_modules, nix_instantiate

SOURCE = Path("/nix/store/11111111111111111111111111111111-source")
HOSTILE = [
    '"',
    "\\",
    '${builtins.abort "pwned"}',
    "''${x}",
    "''",
    "'''",
    "\n}; x = import /etc/passwd; {",
    "$",
    "#",
    "\u00e9\u6f22\U0001f41d",
    "\r\t\x7f",
    "\u2028",
]


def desired(name: str = "alice", role: str = "agent", **spec: Any) -> Desired:
    return Desired(
        name=name,
        role=role,  # type: ignore[arg-type]
        spec={"role": role, "state": "running", "model": "haiku", **spec},
        config_hash="c0ffee",
        agent_nix=None,
        web_port=8123,
        hyperhive_rev="0123abcd",
        commit="deadbeef",
    )


def from_json(path: Path) -> Any:
    return eval_json("-E", f"builtins.fromJSON (builtins.readFile {path})")


def test_written_flake_parses_and_records_rev_and_hash(tmp_path: Path) -> None:
    flake_dir = tmp_path / "flakes" / "alice"
    assert write_flake(flake_dir, desired(), SOURCE, "x86_64-linux") is True
    proc = nix_instantiate("--parse", str(flake_dir / "flake.nix"), str(flake_dir / "agent.nix"))
    assert proc.returncode == 0, proc.stderr
    assert (flake_dir / "flake.nix").read_text() == render_flake(SOURCE)
    assert f'"path:{SOURCE}"' in (flake_dir / "flake.nix").read_text()
    spec = read_spec(flake_dir)
    assert spec is not None
    assert spec["hyperhiveRev"] == "0123abcd"
    assert spec["configHash"] == "c0ffee"
    assert from_json(flake_dir / "spec.json") == spec
    assert flake_ref(flake_dir) == f"{flake_dir}#container"


def test_rewrite_is_idempotent_and_agent_nix_is_copied(tmp_path: Path) -> None:
    flake_dir = tmp_path / "alice"
    d = desired()
    assert write_flake(flake_dir, d, SOURCE) is True
    mtime = (flake_dir / "flake.nix").stat().st_mtime_ns
    assert write_flake(flake_dir, d, SOURCE) is False
    assert (flake_dir / "flake.nix").stat().st_mtime_ns == mtime
    module = "{ pkgs, ... }: { environment.systemPackages = [ pkgs.hello ]; }\n"
    with_nix = Desired(**{**d.__dict__, "agent_nix": module})
    assert write_flake(flake_dir, with_nix, SOURCE) is True
    assert (flake_dir / "agent.nix").read_text() == module


@pytest.mark.parametrize(
    "source",
    [
        "relative/src",
        "/nix/store/x y",
        '/nix/store/x"',
        "/nix/store/${x}",
        "/a#b",
        "/a?b",
        "/a/../b",
    ],
)
def test_an_unplain_source_path_is_refused(tmp_path: Path, source: str) -> None:
    with pytest.raises(FlakeError):
        write_flake(tmp_path / "a", desired(), Path(source))


@pytest.mark.parametrize("package", ["rip grep", "${x}", "a..b", ".a", "a;b", "", 'a"'])
def test_a_bad_package_name_is_refused_before_nix_sees_it(package: str) -> None:
    with pytest.raises(FlakeError, match="nixpkgs attribute names"):
        spec_document(desired(packages=[package]), "x86_64-linux")


def test_a_nul_is_refused() -> None:
    with pytest.raises(FlakeError, match="NUL"):
        spec_document(desired(systemPrompt="a\x00b"), "x86_64-linux")


def test_nix_system_names() -> None:
    assert nix_system("x86_64") == "x86_64-linux"
    assert nix_system("arm64") == "aarch64-linux"


json_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40),
)
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**62), max_value=2**62),
        json_text,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(json_text, inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prompt=json_text, extra=st.dictionaries(json_text, json_value, max_size=4))
def test_hostile_spec_round_trips_through_fromjson(tmp_path: Path, prompt: str, extra: Any) -> None:
    d = desired(systemPrompt=prompt, allowedTools=[prompt], extra=extra)
    flake_dir = tmp_path / "alice"
    write_flake(flake_dir, d, SOURCE, "x86_64-linux")
    # The Nix source never changes with the spec: nothing of it is interpolated.
    assert (flake_dir / "flake.nix").read_text() == render_flake(SOURCE)
    assert from_json(flake_dir / "spec.json") == spec_document(d, "x86_64-linux")


def test_agent_module_gets_the_hostile_spec_exactly(tmp_path: Path) -> None:
    """Through the real generated flake.nix and nixosModules.agent."""
    hostile = "".join(HOSTILE)
    d = desired(systemPrompt=hostile, packages=["ripgrep", "python3Packages.numpy"])
    write_flake(tmp_path, d, SOURCE, "x86_64-linux")
    out = eval_modules("agent", flake_dir=tmp_path)
    assert out["failedAssertions"] == []
    assert out["spec"] == spec_document(d, "x86_64-linux")
    assert out["spec"]["spec"]["systemPrompt"] == hostile
    unit = out["units"]["hive-agent"]
    assert unit["serviceConfig"]["ExecStart"].endswith("/bin/hive-ag3nt serve")
    assert unit["environment"] == {
        "HIVE_AGENT": "alice",
        "HIVE_SOCKET_DIR": "/run/hive",
        "HIVE_STATE_DIR": "/state",
        "CLAUDE_CONFIG_DIR": "/root/.claude",
        "HOME": "/root",
    }
    assert unit["restartTriggers"] == ["c0ffee"]
    assert "/agents" not in unit["unitConfig"]["RequiresMountsFor"]
    assert out["systemPackages"][-2:] == ["ripgrep", "python3.12-numpy"]
    # The container shares the host's network: hands off its interfaces and netfilter.
    assert out["firewall"] is False
    assert out["useDHCP"] is False
    assert out["isContainer"] is True
    assert out["hostName"] == "h-alice"
    assert out["hostPlatform"] == "x86_64-linux"
    # The harness is built with the rev c0re recorded.
    assert out["packageRev"] == "0123abcd"
    assert (out["unfreeClaude"], out["unfreeOther"]) == (True, False)


def test_manager_runs_hive_m1nd_in_agents(tmp_path: Path) -> None:
    write_flake(tmp_path, desired("hm1nd", "manager"), SOURCE, "aarch64-linux")
    out = eval_modules("agent", flake_dir=tmp_path)
    unit = out["units"]["hive-agent"]
    assert unit["serviceConfig"]["ExecStart"].endswith("/bin/hive-m1nd serve")
    assert unit["serviceConfig"]["WorkingDirectory"] == "/agents"
    assert "/agents" in unit["unitConfig"]["RequiresMountsFor"]
    assert out["hostPlatform"] == "aarch64-linux"


def test_a_missing_nixpkgs_package_is_a_clear_nix_error(tmp_path: Path) -> None:
    write_flake(tmp_path, desired(packages=["nosuchpkg"]), SOURCE, "x86_64-linux")
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert spec["spec"]["packages"] == ["nosuchpkg"]
    assert 'nixpkgs has no package "nosuchpkg"' in eval_error("agent", flake_dir=tmp_path)
