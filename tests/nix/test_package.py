"""nix/package.nix: the dependencies of pyproject, and BUILD_REV written safely."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .nixeval import eval_modules


def test_package_depends_on_what_pyproject_lists() -> None:
    out = eval_modules("package", "0123abc")
    assert out["pname"] == "hyperhive"
    assert out["pyproject"] is True
    assert out["buildSystem"] == ["setuptools"]
    assert set(out["dependencies"]) == {
        "pyyaml",
        "watchfiles",
        "pygit2",
        "starlette",
        "uvicorn",
        "aiosqlite",
        "mcp",
        "jsonschema",
        "httpx",
        "sse-starlette",
        "python-multipart",
        "uvloop",
        "httptools",
    }
    assert out["mainProgram"] == "hive-c0re"


def test_build_rev_is_written_into_the_reconciler_package(tmp_path: Path) -> None:
    """Run the rendered postInstall with a hostile rev: it lands verbatim, nothing runs."""
    rev = "abc'; touch pwned; echo '$(x)"
    script = eval_modules("package", rev)["postInstall"]
    site = tmp_path / "lib/python3.13/site-packages/hyperhive/reconciler"
    site.mkdir(parents=True)
    subprocess.run(["bash", "-euc", script], cwd=tmp_path, env={"out": str(tmp_path)}, check=True)
    assert (site / "BUILD_REV").read_text() == rev
    assert not (tmp_path / "pwned").exists()
