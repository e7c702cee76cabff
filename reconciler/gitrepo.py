"""The two desired-state repos under STATE: ``applied`` (the truth) and ``proposed``.

Both have work trees. c0re's own commits (the default hm1nd, approvals,
rollback, destroy) go through :func:`commit_files`, which builds the new tree
from HEAD (never from whatever the operator staged), updates the index and
work tree for the paths it changed as ``git commit`` would, and moves the
branch with a compare-and-swap so a concurrent operator commit is never lost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pygit2

from hyperhive.errors import Conflict, HiveError, NotFound
from hyperhive.names import MANAGER_AGENT, validate_agent_name
from hyperhive.reconciler.desired import default_manager_yaml

BRANCH = "main"
SIGNATURE_NAME = "hive-c0re"
SIGNATURE_EMAIL = "c0re@hyperhive.invalid"
BLOB_MODE = pygit2.enums.FileMode.BLOB


class GitError(HiveError):
    code = "git_error"


@dataclass(frozen=True)
class HistoryEntry:
    commit: str
    summary: str
    author: str
    time: int
    trailers: dict[str, str]


@dataclass(frozen=True)
class MergeResult:
    """What merging applied into proposed did: merged, up to date, postponed or conflict."""

    outcome: str
    message: str = ""


def signature() -> pygit2.Signature:
    return pygit2.Signature(SIGNATURE_NAME, SIGNATURE_EMAIL)


def ensure_repos(applied: Path, proposed: Path, *, manager: bool = True) -> None:
    """First start: applied with the default hm1nd committed, proposed cloned from it."""
    if not (applied / ".git").exists():
        applied.mkdir(parents=True, exist_ok=True)
        pygit2.init_repository(str(applied), bare=False, initial_head=BRANCH)
        changes: dict[str, bytes | None] = {}
        if manager:
            changes[f"{MANAGER_AGENT}/agent.yaml"] = default_manager_yaml()
        commit_files(
            applied,
            changes,
            "Create the applied desired state",
            {"Operator-Action": "init"},
            allow_empty=True,
        )
    if not (proposed / ".git").exists():
        if proposed.exists():
            shutil.rmtree(proposed)  # a half-made clone from a crash
        pygit2.clone_repository(str(applied), str(proposed), checkout_branch=BRANCH)


def head_commit(repo: pygit2.Repository) -> str | None:
    if repo.head_is_unborn:
        return None
    return str(repo.head.target)


def _check_path(path: str) -> str:
    p = PurePosixPath(path)
    if (
        not path
        or p.is_absolute()
        or any(part in ("", ".", "..", ".git") for part in path.split("/"))
        or "\0" in path
    ):
        raise GitError(f"refusing to commit path {path!r}")
    return str(p)


def format_message(message: str, trailers: Mapping[str, str]) -> str:
    text = message.rstrip("\n") + "\n"
    if trailers:
        text += "\n" + "".join(f"{k}: {v}\n" for k, v in trailers.items())
    return text


def commit_files(
    repo_path: Path,
    changes: Mapping[str, bytes | None],
    message: str,
    trailers: Mapping[str, str],
    *,
    allow_empty: bool = False,
) -> str:
    """Commit ``changes`` (path → bytes, None deletes) on top of HEAD; return the new sha.

    The tree is HEAD's tree plus the changes; the index and work tree are updated
    for exactly those paths. With nothing to change (and not ``allow_empty``) the
    current HEAD is returned and no commit is made.
    """
    checked = {_check_path(p): v for p, v in changes.items()}
    repo = pygit2.Repository(str(repo_path))
    for _attempt in range(5):
        parent = head_commit(repo)
        scratch = pygit2.Index()
        parent_obj = repo[parent].peel(pygit2.Commit) if parent is not None else None
        if parent_obj is not None:
            scratch.read_tree(parent_obj.tree)
        for path, data in checked.items():
            if data is None:
                if path in scratch:
                    scratch.remove(path)
            else:
                scratch.add(pygit2.IndexEntry(path, repo.create_blob(data), BLOB_MODE))
        tree = scratch.write_tree(repo)
        unchanged = parent_obj is not None and parent_obj.tree_id == tree
        if parent is not None and unchanged and not allow_empty:
            return parent
        sig = signature()
        oid = repo.create_commit(
            None,
            sig,
            sig,
            format_message(message, trailers),
            tree,
            [] if parent is None else [pygit2.Oid(hex=parent)],
        )
        if _move_branch(repo, parent, oid):
            _sync_worktree(repo, checked)
            return str(oid)
    raise Conflict("the applied repo kept changing under c0re's commit; try again")


def _move_branch(repo: pygit2.Repository, parent: str | None, oid: pygit2.Oid) -> bool:
    """Compare-and-swap the branch HEAD points at; False when someone moved it first."""
    ref_name = str(repo.lookup_reference("HEAD").target)
    try:
        if parent is None:
            repo.create_reference_direct(ref_name, oid, False)
        else:
            ref = repo.lookup_reference(ref_name)
            if str(ref.target) != parent:
                return False
            ref.set_target(oid, "hive-c0re commit")
    except (pygit2.GitError, ValueError, KeyError):
        return False
    return True


def _sync_worktree(repo: pygit2.Repository, changes: Mapping[str, bytes | None]) -> None:
    """Bring index entries and work-tree files of the changed paths to the new HEAD."""
    workdir = Path(repo.workdir)
    index = repo.index
    index.read()
    for path, data in changes.items():
        target = workdir / path
        if data is None:
            if path in index:
                index.remove(path)
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            _prune_empty_dirs(target.parent, workdir)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.c0re-tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            index.add(path)
    index.write()


def _prune_empty_dirs(d: Path, root: Path) -> None:
    while d != root and root in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


def folder_files(repo: pygit2.Repository, commit: str, name: str) -> dict[str, bytes]:
    """Every regular file of ``name/`` at ``commit`` (path → bytes); empty if absent."""
    obj = repo[commit].peel(pygit2.Commit)
    try:
        entry = obj.tree[name]
    except KeyError:
        return {}
    out: dict[str, bytes] = {}
    stack: list[tuple[str, pygit2.Oid]] = [(name, entry.id)]
    while stack:
        prefix, oid = stack.pop()
        tree = repo[oid]
        if not isinstance(tree, pygit2.Tree):
            continue
        for e in tree:
            path = f"{prefix}/{e.name}"
            sub = repo[e.id]
            if isinstance(sub, pygit2.Tree):
                stack.append((path, e.id))
            elif isinstance(sub, pygit2.Blob) and e.filemode != pygit2.enums.FileMode.LINK:
                out[path] = sub.data
    return out


def _folder_id(commit: pygit2.Commit, name: str) -> str | None:
    try:
        return str(commit.tree[name].id)
    except KeyError:
        return None


def history(repo_path: Path, name: str, *, limit: int = 100) -> list[HistoryEntry]:
    """Commits of applied that changed ``name/``, newest first."""
    validate_agent_name(name)
    repo = pygit2.Repository(str(repo_path))
    out: list[HistoryEntry] = []
    if repo.head_is_unborn:
        return out
    for commit in repo.walk(repo.head.target, pygit2.enums.SortMode.TIME):
        mine = _folder_id(commit, name)
        parents = [_folder_id(p, name) for p in commit.parents] or [None]
        if all(mine != p for p in parents):
            out.append(
                HistoryEntry(
                    commit=str(commit.id),
                    summary=commit.message.splitlines()[0] if commit.message else "",
                    author=commit.author.name,
                    time=commit.commit_time,
                    trailers=parse_trailers(commit.message),
                )
            )
            if len(out) >= limit:
                break
    return out


def parse_trailers(message: str) -> dict[str, str]:
    """``Key: value`` lines of the last paragraph."""
    paragraphs = message.strip().split("\n\n")
    out: dict[str, str] = {}
    if len(paragraphs) < 2:
        return out
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(": ")
        if sep and key and " " not in key:
            out[key] = value
    return out


def rollback(repo_path: Path, name: str, rev: str) -> str:
    """Commit ``name/`` as it was at ``rev`` (trailer ``Operator-Action: rollback``)."""
    validate_agent_name(name)
    repo = pygit2.Repository(str(repo_path))
    try:
        target = repo.revparse_single(rev).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError) as e:
        raise NotFound(f"no commit {rev!r} in the applied repo") from e
    old = folder_files(repo, str(target.id), name)
    if not old:
        raise NotFound(f"{name}/ does not exist at {str(target.id)[:12]}")
    head = head_commit(repo)
    current = folder_files(repo, head, name) if head else {}
    changes: dict[str, bytes | None] = {p: None for p in current if p not in old}
    changes.update(old)
    return commit_files(
        repo_path,
        changes,
        f"Roll {name} back to {str(target.id)[:12]}",
        {"Operator-Action": "rollback", "Rollback-To": str(target.id)},
    )


def destroy(repo_path: Path, name: str) -> str:
    """Commit the removal of ``name/`` (trailer ``Operator-Action: destroy``)."""
    validate_agent_name(name)
    repo = pygit2.Repository(str(repo_path))
    head = head_commit(repo)
    current = folder_files(repo, head, name) if head else {}
    if not current:
        raise NotFound(f"no agent {name!r} in the applied repo")
    return commit_files(
        repo_path,
        dict.fromkeys(current),
        f"Destroy {name}",
        {"Operator-Action": "destroy"},
    )


def merge_into_proposed(applied: Path, proposed: Path) -> MergeResult:
    """Merge applied's HEAD into proposed when its work tree is clean; never rewrite it."""
    prepo = pygit2.Repository(str(proposed))
    dirty = {
        path: flags
        for path, flags in prepo.status().items()
        if flags not in (pygit2.enums.FileStatus.WT_NEW, pygit2.enums.FileStatus.IGNORED)
    }
    if dirty:
        return MergeResult("postponed", f"proposed has uncommitted changes ({len(dirty)} paths)")
    arepo = pygit2.Repository(str(applied))
    theirs = head_commit(arepo)
    if theirs is None:
        return MergeResult("up-to-date")
    if "origin" not in [r.name for r in prepo.remotes]:
        prepo.remotes.create("origin", str(applied))
    prepo.remotes["origin"].fetch([f"+refs/heads/{BRANCH}:refs/remotes/origin/{BRANCH}"])
    their_oid = pygit2.Oid(hex=theirs)
    if prepo.head_is_unborn:
        prepo.checkout_tree(prepo[their_oid])  # type: ignore[no-untyped-call]
        prepo.create_reference_direct(f"refs/heads/{BRANCH}", their_oid, True)
        prepo.set_head(f"refs/heads/{BRANCH}")
        return MergeResult("merged", "fast-forward")
    analysis, _pref = prepo.merge_analysis(their_oid)
    if analysis & pygit2.enums.MergeAnalysis.UP_TO_DATE:
        return MergeResult("up-to-date")
    head_ref = prepo.lookup_reference(str(prepo.lookup_reference("HEAD").target))
    if analysis & pygit2.enums.MergeAnalysis.FASTFORWARD:
        prepo.checkout_tree(prepo[their_oid])  # type: ignore[no-untyped-call]
        head_ref.set_target(their_oid, "hive-c0re: fast-forward to applied")
        return MergeResult("merged", "fast-forward")
    ours = prepo.head.target
    index = prepo.merge_commits(ours, their_oid)
    if index.conflicts is not None:
        paths = sorted({(c[1] or c[2] or c[0]).path for c in index.conflicts if any(c)})
        return MergeResult("conflict", "merge of applied conflicts in: " + ", ".join(paths))
    tree = index.write_tree(prepo)
    sig = signature()
    oid = prepo.create_commit(
        None, sig, sig, f"Merge applied {theirs[:12]} into proposed\n", tree, [ours, their_oid]
    )
    prepo.checkout_tree(prepo[oid])  # type: ignore[no-untyped-call]
    head_ref.set_target(oid, "hive-c0re: merge applied")
    return MergeResult("merged", f"merge commit {str(oid)[:12]}")
