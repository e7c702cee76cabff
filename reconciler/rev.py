"""The hyperhive rev this c0re runs: an agent built from another one is stale.

Determined once at start (DESIGN §10): the ``BUILD_REV`` file the Nix build
writes into the package from the flake's ``self.rev``/``dirtyRev``, else for
an editable install ``git rev-parse HEAD`` of the source checkout (with
``-dirty`` when the tree has changes), else ``unknown``.
"""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import resources
from pathlib import Path

import hyperhive


@cache
def hyperhive_rev() -> str:
    baked = resources.files("hyperhive.reconciler").joinpath("BUILD_REV")
    if baked.is_file():
        text = baked.read_text(encoding="utf-8").strip()
        if text:
            return text
    return _git_rev(Path(hyperhive.__file__).resolve().parent.parent) or "unknown"


def _git_rev(source: Path) -> str | None:
    """``git rev-parse HEAD`` (+ ``-dirty``) of a checkout, None when it is not one."""
    if not (source / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head
