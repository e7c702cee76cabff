"""The approval gate's rules, each accepted and refused, on real repos in tmp_path."""

from __future__ import annotations

from collections.abc import Callable

import pygit2
import pytest

from hyperhive.errors import Conflict
from hyperhive.reconciler.approvals import Refused
from tests.dashboard.repos import Hive, agent_yaml

# Each row: (what, the manager's change in proposed) -> accepted.
ACCEPTED: list[tuple[str, dict[str, bytes | None]]] = [
    ("edit an agent", {"alice/agent.yaml": agent_yaml("alice", model="sonnet")}),
    ("add an agent", {"bob/agent.yaml": agent_yaml("bob")}),
    ("add agent.nix", {"alice/agent.nix": b"{ ... }: { }\n"}),
    ("delete an agent", {"alice/agent.yaml": None}),
    ("two agents at once", {"bob/agent.yaml": agent_yaml("bob"), "alice/agent.yaml": None}),
    ("hm1nd edits its own prompt, keeps its role",
     {"hm1nd/agent.yaml": agent_yaml("hm1nd", role="manager", systemPrompt="be brief")}),
]  # fmt: skip

REFUSED: list[tuple[str, dict[str, bytes | None], str]] = [
    ("file outside agent folders", {"README.md": b"hi\n"}, "outside agent folders"),
    ("schema-invalid yaml", {"alice/agent.yaml": agent_yaml("alice", model="bad model!")},
     "alice/agent.yaml is invalid"),
    ("unknown field", {"alice/agent.yaml": agent_yaml("alice", colour="red")}, "invalid"),
    ("not yaml", {"alice/agent.yaml": b"{{{"}, "invalid YAML"),
    ("metadata.name differs", {"bob/agent.yaml": agent_yaml("alice")}, "differs from folder"),
    ("folder without agent.yaml", {"carol/notes.txt": b"x\n"}, "agent.yaml is missing"),
    ("reserved folder name", {"system/agent.yaml": agent_yaml("system")}, "reserved"),
    ("folder name breaks the rule", {"Bad_Name/agent.yaml": agent_yaml("bad")}, "invalid agent"),
    ("hm1nd changes its role", {"hm1nd/agent.yaml": agent_yaml("hm1nd", role="agent")},
     "hm1nd"),
    ("hm1nd deletes itself", {"hm1nd/agent.yaml": None}, "may not delete itself"),
    ("another agent claims manager", {"alice/agent.yaml": agent_yaml("alice", role="manager")},
     "manager"),
    ("agent.nix with a NUL byte", {"alice/agent.nix": b"{ }\x00"}, "NUL"),
    ("agent.nix not UTF-8", {"alice/agent.nix": b"\xff\xfe"}, "UTF-8"),
    ("a NUL in a string", {"alice/agent.yaml": agent_yaml("alice", systemPrompt="a\x00b")},
     "invalid"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "changes"), ACCEPTED, ids=[r[0] for r in ACCEPTED])
async def test_accepted(hive: Hive, what: str, changes: dict[str, bytes | None]) -> None:
    sha = hive.propose(changes)
    approval_id = hive.queue.request_apply_commit(sha)
    a = hive.queue.get(approval_id, with_diff=True)
    assert a.status == "pending"
    assert a.sha == sha
    assert set(a.agents) == {p.split("/")[0] for p in changes}
    assert a.diff and all(f"{p}" in a.diff for p in changes)


@pytest.mark.parametrize(("what", "changes", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused(hive: Hive, what: str, changes: dict[str, bytes | None], reason: str) -> None:
    sha = hive.propose(changes)
    with pytest.raises(Refused, match=reason):
        hive.queue.request_apply_commit(sha)
    assert hive.count() == 0


@pytest.mark.parametrize(
    ("sha", "reason"),
    [
        ("0" * 40, "does not exist in proposed"),
        ("HEAD~1", "hex commit id"),
        ("../../etc", "hex commit id"),
        (7, "hex commit id"),
        ("", "hex commit id"),
    ],
)
def test_refused_sha(hive: Hive, sha: object, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        hive.queue.request_apply_commit(sha)
    assert hive.count() == 0


def test_refused_symlink(hive: Hive) -> None:
    sha = hive.propose_symlink("alice/link", "/etc/shadow")
    with pytest.raises(Refused, match="symlink"):
        hive.queue.request_apply_commit(sha)
    assert hive.count() == 0


def test_refused_nothing_changed(hive: Hive) -> None:
    sha = str(pygit2.Repository(str(hive.proposed)).head.target)
    with pytest.raises(Refused, match="changes nothing"):
        hive.queue.request_apply_commit(sha)


def test_short_sha_is_resolved(hive: Hive) -> None:
    sha = hive.propose({"bob/agent.yaml": agent_yaml("bob")})
    a = hive.queue.get(hive.queue.request_apply_commit(sha[:10]))
    assert a.sha == sha


SPAWN_REFUSED: list[tuple[Callable[[Hive], tuple[object, object]], str]] = [
    (lambda h: ("alice", {"model": "haiku"}), "already exists in applied"),
    (lambda h: ("carol", {"model": "haiku"}) if h.propose(
        {"carol/agent.yaml": agent_yaml("carol")}) else ("", {}), "already exists in proposed"),
    (lambda h: ("Bad", {"model": "haiku"}), "invalid agent name"),
    (lambda h: ("operator", {}), "reserved"),
    (lambda h: ("dave", {"model": "no spaces"}), "invalid"),
    (lambda h: ("dave", {"role": "manager"}), "manager"),
    (lambda h: ("dave", ["not", "a", "mapping"]), "JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "reason"), SPAWN_REFUSED, ids=[r[1] for r in SPAWN_REFUSED])
def test_spawn_refused(
    hive: Hive, args: Callable[[Hive], tuple[object, object]], reason: str
) -> None:
    name, spec = args(hive)
    with pytest.raises(Refused, match=reason):
        hive.queue.request_spawn(name, spec)
    assert hive.count() == 0


async def test_spawn_approved_writes_agent_yaml(hive: Hive) -> None:
    approval_id = hive.queue.request_spawn("dave", {"model": "haiku", "systemPrompt": "hi"})
    with pytest.raises(Refused, match="already pending"):
        hive.queue.request_spawn("dave", {"model": "haiku"})
    a = await hive.queue.approve(approval_id)
    assert a.status == "applied"
    assert b"name: dave" in (hive.applied_file("dave/agent.yaml") or b"")
    assert hive.reconciled == [["dave"]]
    assert "applied" in hive.told[-1]


async def test_approve_copies_folders_with_trailers(hive: Hive) -> None:
    sha = hive.propose({"alice/agent.yaml": agent_yaml("alice", model="opus"),
                        "bob/agent.yaml": agent_yaml("bob")})  # fmt: skip
    approval_id = hive.queue.request_apply_commit(sha)
    a = await hive.queue.approve(approval_id)
    assert a.status == "applied" and a.applied_commit
    repo = pygit2.Repository(str(hive.applied))
    head = repo.head.peel(pygit2.Commit)
    assert str(head.id) == a.applied_commit
    assert head.message_trailers == {"Approval-Id": str(approval_id), "Proposed-Commit": sha}
    assert b"model: opus" in (hive.applied_file("alice/agent.yaml") or b"")
    assert hive.applied_file("bob/agent.yaml") == agent_yaml("bob")
    assert (hive.applied / "bob" / "agent.yaml").read_bytes() == agent_yaml("bob")  # work tree
    assert hive.told == [f"approval {approval_id} (apply_commit {sha} (alice,bob)): applied "
                         f"as applied commit {a.applied_commit}"]  # fmt: skip
    with pytest.raises(Conflict, match="applied, not pending"):
        await hive.queue.approve(approval_id)


async def test_approve_deletes_a_folder(hive: Hive) -> None:
    a = await hive.queue.approve(hive.queue.request_apply_commit(
        hive.propose({"alice/agent.yaml": None})))  # fmt: skip
    assert a.status == "applied"
    assert hive.applied_file("alice/agent.yaml") is None


async def test_no_silent_overwrite(hive: Hive) -> None:
    sha = hive.propose({"alice/agent.yaml": agent_yaml("alice", model="opus")})
    approval_id = hive.queue.request_apply_commit(sha)
    newer = agent_yaml("alice", model="sonnet")
    hive.operator_commit({"alice/agent.yaml": newer})
    a = await hive.queue.approve(approval_id)
    assert a.status == "failed"
    assert "applied changed alice/" in a.note
    assert hive.applied_file("alice/agent.yaml") == newer
    assert "failed" in hive.told[-1]


async def test_other_folders_moving_do_not_block(hive: Hive) -> None:
    sha = hive.propose({"alice/agent.yaml": agent_yaml("alice", model="opus")})
    approval_id = hive.queue.request_apply_commit(sha)
    hive.operator_commit({"zed/agent.yaml": agent_yaml("zed")})
    a = await hive.queue.approve(approval_id)
    assert a.status == "applied"
    assert hive.applied_file("zed/agent.yaml") == agent_yaml("zed")


async def test_second_change_on_top_of_an_approved_one(hive: Hive) -> None:
    """Applied holding the manager's own earlier state is not a conflict."""
    first = hive.propose({"alice/agent.yaml": agent_yaml("alice", model="opus")})
    await hive.queue.approve(hive.queue.request_apply_commit(first))
    second = hive.propose({"alice/agent.yaml": agent_yaml("alice", model="sonnet")})
    a = await hive.queue.approve(hive.queue.request_apply_commit(second))
    assert a.status == "applied", a.note
    assert b"model: sonnet" in (hive.applied_file("alice/agent.yaml") or b"")


async def test_deny_with_note(hive: Hive) -> None:
    approval_id = hive.queue.request_apply_commit(
        hive.propose({"bob/agent.yaml": agent_yaml("bob")})
    )
    a = await hive.queue.deny(approval_id, "not today")
    assert (a.status, a.note) == ("denied", "not today")
    assert hive.applied_file("bob/agent.yaml") is None
    assert hive.told[-1].endswith("denied — not today")
    assert hive.events == [
        ("bob", "approval_requested", f"approval {approval_id}: apply_commit requested"),
        ("bob", "approval_denied", f"approval {approval_id}: denied not today"),
    ]
    with pytest.raises(Conflict):
        await hive.queue.approve(approval_id)


async def test_listing_puts_pending_first(hive: Hive) -> None:
    ids = [hive.queue.request_spawn(n, {"model": "haiku"}) for n in ("p1", "p2", "p3")]
    await hive.queue.deny(ids[0])
    assert [a.id for a in hive.queue.listing()] == [ids[1], ids[2], ids[0]]
    assert [a.id for a in hive.queue.listing(pending_only=True)] == ids[1:]


async def test_recover_marks_committed_and_reapplies_missing(hive: Hive) -> None:
    """The two crash cases: trailer in applied → applied; trailer missing → applied now."""
    a1 = hive.queue.request_spawn("one", {"model": "haiku"})
    a2 = hive.queue.request_spawn("two", {"model": "haiku"})
    hive.conn.execute("UPDATE approvals SET status = 'approved'")
    hive.queue.commit(hive.applied, {"one/agent.yaml": agent_yaml("one")}, "crashed",
                      {"Approval-Id": str(a1)})  # fmt: skip
    healed = await hive.queue.recover()
    assert [(a.id, a.status) for a in healed] == [(a1, "applied"), (a2, "applied")]
    repo = pygit2.Repository(str(hive.applied))
    trailers = [c.message_trailers.get("Approval-Id") for c in repo.walk(repo.head.target)]
    assert trailers.count(str(a1)) == 1 and trailers.count(str(a2)) == 1
    assert await hive.queue.recover() == []
