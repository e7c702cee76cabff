"""The broker's tunables: the ``[broker]`` section of the config file, then flags.

Every limit a client can run into (body size, lease length, wait cap) lives
here so tests and the protocol docs read the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hyperhive.config import ConfigError, take

KNOWN_KEYS = frozenset(
    {
        "lease_seconds",
        "retention_days",
        "max_body",
        "max_failures",
        "max_wait",
        "retention_interval",
        "ping_seconds",
    }
)


@dataclass(frozen=True)
class BrokerSettings:
    #: How long a ``recv`` lease lasts before the message is ready again.
    lease_seconds: float = 600.0
    #: Acked and dead messages older than this are deleted (with their events).
    retention_days: float = 30.0
    #: Largest message body in UTF-8 bytes; a bigger one is ``413 too_large``.
    max_body: int = 64 * 1024
    #: Failed deliveries (nack or lease expiry) before a message is dead-lettered.
    max_failures: int = 5
    #: ``recv?wait=`` is clamped to this many seconds.
    max_wait: float = 60.0
    #: How often the retention sweep runs.
    retention_interval: float = 3600.0
    #: SSE keep-alive comment interval.
    ping_seconds: float = 15.0

    @property
    def max_request(self) -> int:
        """Largest HTTP request body: JSON escaping can grow a body up to 6x (``\\u0000``)."""
        return self.max_body * 6 + 4096

    @classmethod
    def from_config(
        cls, section: dict[str, Any], *, lease_seconds: float | None = None
    ) -> BrokerSettings:
        unknown = sorted(set(section) - KNOWN_KEYS)
        if unknown:
            raise ConfigError(f"[broker]: unknown option(s) {unknown}")
        d = cls()
        out = cls(
            lease_seconds=take(section, "lease_seconds", float, d.lease_seconds),
            retention_days=take(section, "retention_days", float, d.retention_days),
            max_body=take(section, "max_body", int, d.max_body),
            max_failures=take(section, "max_failures", int, d.max_failures),
            max_wait=take(section, "max_wait", float, d.max_wait),
            retention_interval=take(section, "retention_interval", float, d.retention_interval),
            ping_seconds=take(section, "ping_seconds", float, d.ping_seconds),
        )
        if lease_seconds is not None:
            out = replace(out, lease_seconds=lease_seconds)
        out.check()
        return out

    def check(self) -> None:
        for name in ("lease_seconds", "retention_days", "max_wait", "retention_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[broker] {name} must be positive")
        if self.ping_seconds <= 0:
            raise ConfigError("[broker] ping_seconds must be positive")
        if self.max_body < 1:
            raise ConfigError("[broker] max_body must be at least 1")
        if self.max_failures < 1:
            raise ConfigError("[broker] max_failures must be at least 1")
