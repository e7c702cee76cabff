"""``status.json``: what c0re learns about this agent (DESIGN §10).

Rewritten atomically (temp file + rename) on every change, so c0re's file
watcher never reads half a document. Totals survive restarts: they are read
back from the previous file on start.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hyperhive.clock import now_rfc3339


@dataclass
class Status:
    logged_in: bool = False
    busy: bool = False
    turns: int = 0
    last_turn_at: str | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def count_turn(self) -> None:
        self.turns += 1
        self.last_turn_at = now_rfc3339()

    def add_usage(self, result: dict[str, Any] | None) -> None:
        """Add one claude run's cost and tokens (from its ``result`` line)."""
        if result is None:
            return
        cost = result.get("total_cost_usd")
        if isinstance(cost, int | float):
            self.cost_usd = round(self.cost_usd + float(cost), 6)
        usage = result.get("usage")
        if isinstance(usage, dict):
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
                value = usage.get(key)
                if isinstance(value, int):
                    self.input_tokens += value
            out = usage.get("output_tokens")
            if isinstance(out, int):
                self.output_tokens += out


class StatusFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.status = _load(path)

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self.status)))
        os.replace(tmp, self.path)


def _load(path: Path) -> Status:
    """Totals from the previous run; a missing or broken file starts from zero."""
    try:
        data = json.loads(path.read_text())
        return Status(
            turns=int(data["turns"]),
            last_turn_at=data.get("last_turn_at"),
            cost_usd=float(data["cost_usd"]),
            input_tokens=int(data["input_tokens"]),
            output_tokens=int(data["output_tokens"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return Status()
