"""Bad configuration and bad starts end in one clear line, never a traceback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hyperhive.errors import HiveError
from hyperhive.harness.agent_config import load_config
from hyperhive.harness.claude_runner import TurnOutcome, run_claude

BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict[str, str]:
    return {"HIVE_STATE_DIR": str(tmp_path), "HIVE_SOCKET_DIR": str(tmp_path), "HOME": "/root"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{", "not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('{"name": "../etc"}', "invalid agent name"),
        ('{"name": "alice", "role": "root"}', "role must be agent or manager"),
        ('{"name": "alice", "spec": {"model": 3}}', "spec.model"),
        ('{"name": "alice", "spec": {"allowedTools": "Bash"}}', "allowedTools"),
    ],
)
def test_bad_agent_json_is_a_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "agent.json").write_text(content)
    with pytest.raises(HiveError, match=message):
        load_config(_env(tmp_path), manager=False)


def test_manager_command_runs_only_hm1nd(tmp_path: Path) -> None:
    (tmp_path / "agent.json").write_text(json.dumps({"name": "alice"}))
    with pytest.raises(HiveError, match="runs the manager hm1nd"):
        load_config(_env(tmp_path), manager=True)
    (tmp_path / "agent.json").write_text(json.dumps({"name": "hm1nd", "spec": {"model": "opus"}}))
    cfg = load_config({**_env(tmp_path), "HIVE_WORKDIR": str(tmp_path / "w")}, manager=True)
    assert cfg.manager and cfg.mailbox == "manager" and cfg.model == "opus"
    assert cfg.c0re_sock == tmp_path / "c0re.sock"


def test_serve_without_agent_json_exits_with_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(BIN / "hive-ag3nt"), "serve"],
        env=_env(tmp_path),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert (
        out.stderr.decode().strip()
        == f"hive-ag3nt: cannot read {tmp_path}/agent.json: No such file or directory"
    )


def test_a_missing_claude_is_a_failed_turn_not_a_crash(tmp_path: Path) -> None:
    async def nothing(_: object) -> None:
        return None

    outcome = asyncio.run(
        run_claude(
            [str(tmp_path / "no-claude")],
            prompt="hi",
            cwd=tmp_path,
            env={},
            timeout=5,
            on_line=nothing,
            on_start=nothing,
        )
    )
    assert not outcome.ok and outcome.error.startswith("cannot start")


@pytest.mark.parametrize(
    ("outcome", "ok", "error"),
    [
        (TurnOutcome(0, {"is_error": False}), True, ""),
        (TurnOutcome(0, {"is_error": True, "result": "API Error: 529"}), False, "API Error: 529"),
        (TurnOutcome(1, {"is_error": False}), False, "claude exited with 1: "),
        (TurnOutcome(0, None), False, "claude printed no result"),
        (TurnOutcome(None, timed_out=True), False, "turn timed out"),
    ],
)
def test_turn_outcomes(outcome: TurnOutcome, ok: bool, error: str) -> None:
    assert outcome.ok is ok
    assert outcome.error == error
