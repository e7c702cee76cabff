"""The one TOML file both daemons read (sections ``[broker]``, ``[c0re]``, ``[dashboard]``).

Command-line flags override it. Unknown sections are an error so a typo in an
operator's config does not silently do nothing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from hyperhive.errors import HiveError

SECTIONS = frozenset({"broker", "c0re", "dashboard"})


class ConfigError(HiveError):
    code = "bad_config"


def load_config(path: Path | None) -> dict[str, dict[str, Any]]:
    """Parse the config file; ``None`` means built-in defaults (every section empty)."""
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if path is None:
        return out
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML in {path}: {e}") from e
    for key, value in data.items():
        if key not in SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{key}] (expected one of {sorted(SECTIONS)})"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{key}] must be a table")
        out[key] = value
    return out


def take(section: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    """Read one typed option from a config section, with a clear error on a wrong type."""
    value = section.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"option {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value
