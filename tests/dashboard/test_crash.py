"""kill -9 of hive-c0re between the applied commit and the status update.

A fault hook (``HYPERHIVE_FAULT=approval-after-commit``) makes the real
``hive-c0re serve`` SIGKILL itself at exactly that point; after a restart the
change is in applied exactly once and the approval reads ``applied``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pygit2
import pytest

from hyperhive.jsonlines import Unreachable
from hyperhive.reconciler import gitrepo
from hyperhive.reconciler.approvals import FAULT_AFTER_COMMIT, FAULT_ENV
from tests.conftest import require_tool
from tests.dashboard.hive_proc import HiveProcess
from tests.dashboard.procs import BIN
from tests.dashboard.repos import agent_yaml
from tests.polling import until

pytestmark = pytest.mark.slow


@pytest.fixture
async def hive(tmp_path: Path) -> AsyncIterator[HiveProcess]:
    require_tool("bwrap")
    h = HiveProcess(tmp_path)
    try:
        yield h
    finally:
        await h.stop()


def approval_commits(applied: Path, approval_id: int) -> int:
    repo = pygit2.Repository(str(applied))
    return sum(
        c.message_trailers.get("Approval-Id") == str(approval_id)
        for c in repo.walk(repo.head.target)
    )


async def test_kill9_between_commit_and_status(hive: HiveProcess) -> None:
    await hive.start(env={FAULT_ENV: FAULT_AFTER_COMMIT})
    answer = await hive.manager({"cmd": "request_spawn", "name": "alice",
                                 "spec": {"model": "haiku", "state": "running"}})  # fmt: skip
    assert answer["ok"], answer
    approval_id = answer["id"]
    with pytest.raises(Unreachable):  # the daemon dies mid-request
        await hive.admin({"cmd": "approve", "id": approval_id})
    assert await hive.wait_c0re_exit() == -9
    assert approval_commits(hive.paths.applied, approval_id) == 1
    await hive.start()  # no fault this time
    pending = await hive.admin({"cmd": "pending", "all": True})
    [a] = [a for a in pending["approvals"] if a["id"] == approval_id]
    assert a["status"] == "applied"
    assert approval_commits(hive.paths.applied, approval_id) == 1
    await until(lambda: hive.phase("alice"), "alice to be reconciled", timeout=15)
    mail = await hive.manager_mail()
    assert any(f"approval {approval_id} (spawn of alice): applied" in m for m in mail), mail
    await cli_verbs(hive)


def hive_c0re(hive: HiveProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "hive-c0re"), "--home", str(hive.home), *args],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


async def cli_verbs(hive: HiveProcess) -> None:
    """The same gate from a terminal: pending [--diff], approve, deny, exit codes."""
    assert hive_c0re(hive, "pending").stdout.strip() == "nothing pending"
    sha = gitrepo.commit_files(hive.paths.proposed, {"carol/agent.yaml": agent_yaml("carol")},
                               "Add carol", {})  # fmt: skip
    new_id = (await hive.manager({"cmd": "request_apply_commit", "sha": sha}))["id"]
    out = hive_c0re(hive, "pending", "--diff")
    assert out.returncode == 0
    assert re.search(rf"^{new_id}\s+apply_commit\s+carol\s", out.stdout, re.MULTILINE), out.stdout
    assert "+++ b/carol/agent.yaml" in out.stdout and "+  model: haiku" in out.stdout
    denied = hive_c0re(hive, "deny", str(new_id), "carol can wait")
    assert denied.returncode == 0 and "denied (carol can wait)" in denied.stdout
    again = hive_c0re(hive, "--json", "approve", str(new_id))
    assert again.returncode == 4 and "not pending" in again.stderr
