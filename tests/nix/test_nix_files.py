"""Every .nix file in the repo parses, and the agent flake template is the one c0re writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hyperhive.reconciler.runtimes.flake import FLAKE_TEMPLATE, STUB_AGENT_NIX

from .nixeval import REPO, nix_instantiate

SKIP_DIRS = {".git", ".venv", ".build", ".hive", "node_modules", "test-artifacts"}


def nix_files() -> list[Path]:
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "*.nix"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / f for f in tracked if not SKIP_DIRS & set(Path(f).parts)]


def test_every_nix_file_parses() -> None:
    files = nix_files()
    names = {f.relative_to(REPO).as_posix() for f in files}
    assert {"flake.nix", "nix/modules/hive-c0re.nix", "nix/modules/agent.nix"} <= names
    # One nix-instantiate for all of them: it stops at the first error and names it.
    proc = nix_instantiate("--parse", *map(str, files))
    assert proc.returncode == 0, proc.stderr


def test_agent_flake_template_is_what_c0re_writes() -> None:
    assert (REPO / "nix/agent-flake/flake.nix").read_text() == FLAKE_TEMPLATE
    assert (REPO / "nix/agent-flake/agent.nix").read_text() == STUB_AGENT_NIX


def test_a_syntax_error_is_caught() -> None:
    """The parse check is not vacuous: a broken file fails."""
    proc = nix_instantiate("--parse", "-E", "{ a = ; }")
    assert proc.returncode != 0
