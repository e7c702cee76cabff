"""Agent and mailbox names: the one place they are validated.

A name becomes a container name (``h-<name>``, 11 characters at most for
nixos-container), a directory under RUN and STATE, and a Nix attribute, so the
alphabet is deliberately tiny.
"""

from __future__ import annotations

import re

from hyperhive.errors import BadRequest

AGENT_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,8}")
MANAGER_AGENT = "hm1nd"
MANAGER_MAILBOX = "manager"
OPERATOR = "operator"
SYSTEM = "system"
#: Names an agent folder may never take: they are mailboxes with other meanings.
RESERVED_NAMES = frozenset({MANAGER_MAILBOX, OPERATOR, SYSTEM})


class InvalidName(BadRequest):
    """A name that breaks the naming rule."""


def is_agent_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and AGENT_NAME_RE.fullmatch(name) is not None
        and name not in RESERVED_NAMES
    )


def validate_agent_name(name: object) -> str:
    """Return ``name`` if it is a valid agent name, else raise :class:`InvalidName`."""
    if not isinstance(name, str):
        raise InvalidName("agent name must be a string")
    if AGENT_NAME_RE.fullmatch(name) is None:
        raise InvalidName(f"invalid agent name {name!r}: must match ^[a-z][a-z0-9-]{{0,8}}$")
    if name in RESERVED_NAMES:
        raise InvalidName(f"agent name {name!r} is reserved")
    return name


def mailbox_for_agent(agent: str) -> str:
    """The mailbox an agent reads: hm1nd reads ``manager``, everyone else their name."""
    return MANAGER_MAILBOX if agent == MANAGER_AGENT else agent


def validate_mailbox_name(name: object) -> str:
    """A mailbox is ``manager`` or an agent name (``hm1nd`` is an alias of ``manager``)."""
    if name in (MANAGER_MAILBOX, MANAGER_AGENT):
        return MANAGER_MAILBOX
    return validate_agent_name(name)


def fnv1a32(data: str) -> int:
    """32-bit FNV-1a of the UTF-8 bytes; spreads agents' default web ports."""
    h = 0x811C9DC5
    for byte in data.encode():
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def preferred_web_port(name: str) -> int:
    """hm1nd gets 8000; every other agent ``8100 + fnv1a32(name) % 900`` (before probing)."""
    if name == MANAGER_AGENT:
        return 8000
    return 8100 + fnv1a32(name) % 900
