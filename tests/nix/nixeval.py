"""Evaluate Nix with nix-instantiate and the nixpkgs lib, for the Nix tests.

The lib is found as the vendor README says: ``$NIXPKGS_LIB``, then
``<nixpkgs/lib>`` on ``NIX_PATH``, then ``shared/vendor/nixpkgs-lib/lib`` beside
the repo (``/work/shared`` here, ``../shared`` of a CI clone).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, require_tool

REPO = Path(__file__).resolve().parent.parent.parent
EVAL_NIX = Path(__file__).resolve().parent / "eval.nix"


def nixpkgs_lib() -> Path:
    """The nixpkgs lib directory; skips locally (fails in CI) when there is none."""
    candidates: list[Path] = []
    if env := os.environ.get("NIXPKGS_LIB"):
        candidates.append(Path(env))
    for entry in os.environ.get("NIX_PATH", "").split(":"):
        if entry.startswith("nixpkgs="):
            candidates.append(Path(entry.removeprefix("nixpkgs=")) / "lib")
        elif entry and "=" not in entry:
            candidates.append(Path(entry) / "nixpkgs" / "lib")
    candidates.append(REPO.parent / "shared" / "vendor" / "nixpkgs-lib" / "lib")
    candidates.append(Path("/work/shared/vendor/nixpkgs-lib/lib"))
    for c in candidates:
        if (c / "default.nix").is_file():
            return c.resolve()
    message = "no nixpkgs lib found ($NIXPKGS_LIB, <nixpkgs/lib>, ../shared/vendor/nixpkgs-lib/lib)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def nix_instantiate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    tool = require_tool("nix-instantiate")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def eval_json(*args: str) -> Any:
    """``nix-instantiate --eval --strict --json ARGS`` → the value; fails the test on error."""
    proc = nix_instantiate("--eval", "--strict", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _module_args(which: str, config: Any, flake_dir: Path | None) -> list[str]:
    args = [
        "--eval",
        "--strict",
        "--json",
        str(EVAL_NIX),
        "--arg",
        "lib",
        str(nixpkgs_lib()),
        "--arg",
        "root",
        str(REPO),
        "--argstr",
        "which",
        which,
        "--argstr",
        "configJson",
        json.dumps(config or {}),
    ]
    if flake_dir is not None:
        args += ["--arg", "flakeDir", str(flake_dir)]
    return args


def eval_modules(which: str, config: Any = None, flake_dir: Path | None = None) -> Any:
    """Evaluate ``which`` (hive-c0re | agent) through tests/nix/eval.nix."""
    proc = nix_instantiate(*_module_args(which, config, flake_dir))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def eval_error(which: str, config: Any = None, flake_dir: Path | None = None) -> str:
    """The error text of an evaluation expected to fail."""
    proc = nix_instantiate(*_module_args(which, config, flake_dir))
    assert proc.returncode != 0, proc.stdout
    return proc.stderr
