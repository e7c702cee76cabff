"""Retry timing for agents whose actions failed (DESIGN §4).

Temporary errors back off exponentially with jitter, from 1 s to 5 min; a
permanent error waits for the agent's desired config to change. This state
is the only memory the loop keeps between passes about an agent, and it
decides *when* to try again, never *what* the agent should look like.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Retry:
    """Why an agent is waiting: backoff until ``at``, or a permanent error on ``config``."""

    failures: int = 0
    at: float = 0.0
    permanent_for: str | None = None


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """1 s, 2 s, 4 s … capped at 5 min, each with up to 20 % jitter (never under 1 s).

    The first crash of a running agent restarts it at once; this delay is
    what the next failure waits.
    """
    raw = base * 2 ** max(0, failures - 1)
    jittered: float = min(cap, raw) * rng.uniform(0.8, 1.0)
    return max(base, jittered)
