"""Render transcript events as small HTML fragments for the web UI.

The server renders, the page's few lines of JavaScript only append what the
SSE stream carries, so the transcript reads the same on first load, after a
reload and after a restart. Everything from claude or a message is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from hyperhive.harness.events import NOTE, STREAM, TURN_END, TURN_START, Event
from hyperhive.harness.status import Status

PREVIEW = 2000


def _clip(text: str, limit: int = PREVIEW) -> str:
    return text if len(text) <= limit else text[:limit] + " …"


def _div(cls: str, inner: str, event: Event) -> str:
    return f'<div class="ev {cls}" data-id="{event.id}" data-turn="{event.turn}">{inner}</div>'


def _tool_call(block: dict[str, Any]) -> str:
    name = str(block.get("name", "?")).removeprefix("mcp__hive__")
    args = block.get("input")
    if isinstance(args, dict):
        shown = ", ".join(
            f"{k}={_clip(json.dumps(v, ensure_ascii=False), 400)}" for k, v in args.items()
        )
    else:
        shown = ""
    return f'<span class="glyph">⟶</span> <b>{escape(name)}</b>({escape(shown)})'


def _tool_result(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        text = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    else:
        text = str(content or "")
    return f'<span class="glyph">⟵</span> {escape(_clip(text, 600))}'


def _stream(event: Event) -> str:
    data = event.data
    kind = data.get("type")
    if kind == "assistant":
        parts = []
        for block in (data.get("message") or {}).get("content") or []:
            if block.get("type") == "text" and block.get("text"):
                parts.append(_div("say", escape(_clip(str(block["text"]))), event))
            elif block.get("type") == "tool_use":
                parts.append(_div("tool", _tool_call(block), event))
        return "".join(parts)
    if kind == "user":
        parts = []
        for block in (data.get("message") or {}).get("content") or []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                cls = "result err" if block.get("is_error") else "result"
                parts.append(_div(cls, _tool_result(block), event))
        return "".join(parts)
    if kind == "system" and data.get("subtype") == "init":
        servers = ", ".join(
            f"{s.get('name')}:{s.get('status')}" for s in data.get("mcp_servers") or []
        )
        text = f"session · model {data.get('model', '?')} · mcp {servers or 'none'}"
        return _div("dim", escape(text), event)
    if kind == "system" and data.get("subtype") == "api_retry":
        text = (
            f"api retry {data.get('attempt')}/{data.get('max_retries')} after "
            f"{data.get('error_status')} {data.get('error', '')}"
        )
        return _div("note", escape(text), event)
    if kind == "system" and data.get("status") == "compacting":
        return _div("note", "compacting the conversation", event)
    if kind == "raw":
        return _div("dim", escape(_clip(str(data.get("text", "")), 400)), event)
    return ""


def _turn_start(event: Event) -> str:
    m = event.data.get("message") or {}
    attempt = m.get("attempt", 1)
    again = f" · attempt {attempt}" if attempt and attempt > 1 else ""
    head = (
        f'<span class="rule">┌─ turn {event.turn}</span> · message #{escape(str(m.get("id")))}'
        f' from <b class="who">{escape(str(m.get("from")))}</b>{again}'
        f" · <time>{escape(event.at)}</time>"
    )
    body = f'<pre class="body">{escape(_clip(str(m.get("body", ""))))}</pre>'
    return _div("start", head + body, event)


def _turn_end(event: Event) -> str:
    d = event.data
    cost = d.get("total_cost_usd")
    usage = d.get("usage") or {}
    secs = (d.get("duration_ms") or 0) / 1000
    facts = [f"{secs:.1f} s"]
    if isinstance(cost, int | float):
        facts.append(f"${cost:.4f}")
    if usage:
        facts.append(f"{usage.get('input_tokens', 0)} in / {usage.get('output_tokens', 0)} out")
    if d.get("num_turns") is not None:
        facts.append(f"{d['num_turns']} model calls")
    if d.get("ok"):
        head = f'<span class="rule">└─ ✓ turn {event.turn} done</span> · {" · ".join(facts)}'
        return _div("end ok", head, event)
    why = escape(_clip(str(d.get("error") or "failed"), 500))
    head = f'<span class="rule">└─ ✗ turn {event.turn} failed</span> · {why} · message returned'
    return _div("end err", head, event)


def render(event: Event) -> str:
    if event.kind == TURN_START:
        return _turn_start(event)
    if event.kind == TURN_END:
        return _turn_end(event)
    if event.kind == STREAM:
        return _stream(event)
    if event.kind == NOTE:
        return _div("note", escape(str(event.data.get("text", ""))), event)
    return ""


def status_line(status: Status, login_phase: str) -> str:
    state = "busy" if status.busy else "idle"
    if not status.logged_in:
        state = "not logged in" if login_phase != "waiting_code" else "login: waiting for code"
    return escape(
        f"{state} · {status.turns} turns · ${status.cost_usd:.4f} · "
        f"{status.input_tokens} in / {status.output_tokens} out tokens"
    )
