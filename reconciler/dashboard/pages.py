"""Server-rendered HTML of the dashboard: agents, approvals, one agent, the live flow.

Plain functions from data (the admin commands' JSON shapes, DESIGN §7) to
escaped HTML strings: no template engine, no JS build step. Every form is a
POST that works without JavaScript; ``hive.js`` only turns it into a fetch.
Every value that came from an agent, a commit or a message goes through
``e()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

GOOD = frozenset({"running", "applied", "True"})
BAD = frozenset({"failed", "denied", "False"})


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def badge(text: object, title: object = "") -> str:
    t = str(text)
    tone = "good" if t in GOOD else "bad" if t in BAD else "warn"
    tip = f' title="{e(title)}"' if title else ""
    return f'<span class="badge {tone}"{tip}>{e(t)}</span>'


def layout(title: str, main: str, *, nav: str, pending: int, csrf: str, msg: str = "") -> str:
    tabs = [("agents", "/", "ag3nts"), ("approvals", "/approvals", "appr0vals"),
            ("flow", "/flow", "fl0w")]  # fmt: skip
    links = "".join(
        f'<a href="{href}"{" aria-current=page" if key == nav else ""}>{label}'
        + (f' <span class="count">{pending}</span>' if key == "approvals" and pending else "")
        + "</a>"
        for key, href, label in tabs
    )
    flash = f'<p class="flash" role="status">{e(msg)}</p>' if msg else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f'<meta name="hive-csrf" content="{e(csrf)}">'
        f"<title>{e(title)} // hyperhive</title>"
        '<link rel=stylesheet href="/static/hive.css">'
        '<script src="/static/hive.js" defer></script></head><body>'
        '<header><a class="logo" href="/">hyp3rh1ve<span>//c0re</span></a>'
        f"<nav>{links}</nav></header>"
        f'<div id="toast" role="status" aria-live="polite">{flash}</div>'
        f'<main id="main" data-live="/events">{main}</main></body></html>'
    )


def _csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(csrf)}">'


def button_form(action: str, label: str, csrf: str, *, tone: str = "", extra: str = "") -> str:
    return (
        f'<form class="act" method="post" action="{e(action)}">{_csrf_field(csrf)}{extra}'
        f'<button type="submit" class="{tone}">{label}</button></form>'
    )


def conditions(conds: Iterable[Mapping[str, Any]]) -> str:
    """One small badge per condition, coloured by status; reason and message on hover."""
    out = []
    for c in conds:
        status = c.get("status")
        tone = "good" if status == "True" else "bad" if status == "False" else "warn"
        tip = f"{c.get('type')}={status}: {c.get('reason') or ''} {c.get('message') or ''}"
        out.append(f'<span class="badge {tone}" title="{e(tip)}">{e(c.get("type"))}</span>')
    return " ".join(out)


def _cost(agent: Mapping[str, Any]) -> str:
    cost = agent.get("cost_usd")
    return f"${cost:.4f}" if isinstance(cost, int | float) else "—"


def agents_page(agents: Sequence[Mapping[str, Any]], host: str, pending: int) -> str:
    rows = []
    for a in agents:
        name = str(a.get("name", ""))
        port = a.get("web_port")
        web = f'<a href="http://{e(host)}:{e(port)}/">:{e(port)} ↗</a>' if port else "—"
        commit = str(a.get("applied_commit") or "")[:10]
        suspended = ' <span class="badge warn">suspended</span>' if a.get("suspended") else ""
        rows.append(
            f'<tr id="agent-{e(name)}"><td data-label=agent><a href="/agents/{e(name)}">'
            f"{e(name)}</a></td>"
            f"<td data-label=phase>{badge(a.get('phase', '?'))}{suspended}</td>"
            f"<td data-label=conditions>{conditions(a.get('conditions') or [])}</td>"
            f"<td data-label=commit><code>{e(commit) or '—'}</code></td>"
            f"<td data-label='web ui'>{web}</td>"
            f"<td data-label='last turn'>{e(a.get('last_turn_at') or '—')}</td>"
            f"<td data-label=cost>{_cost(a)}</td></tr>"
        )
    waiting = (
        f'<p class="callout"><a href="/approvals">◆ {pending} approval'
        f"{'s' if pending != 1 else ''} waiting for you</a></p>"
        if pending
        else ""
    )
    body = "".join(rows) or '<tr><td colspan=7 class="muted">no agents yet</td></tr>'
    return (
        f"<h1>ag3nts <small>{len(agents)}</small></h1>{waiting}"
        '<table class="grid"><thead><tr><th>agent</th><th>phase</th><th>conditions</th>'
        "<th>applied</th><th>web ui</th><th>last turn</th><th>cost</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def render_diff(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            cls = "file"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "ctx"
        lines.append(f'<span class="{cls}">{e(line)}</span>')
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _what(a: Mapping[str, Any]) -> str:
    if a.get("kind") == "spawn":
        return f"spawn <b>{e(a.get('agent'))}</b>"
    return f"apply <b>{e(a.get('agent'))}</b> from <code>{e(str(a.get('sha') or '')[:12])}</code>"


def approvals_page(approvals: Sequence[Mapping[str, Any]], csrf: str) -> str:
    pending = [a for a in approvals if a.get("status") == "pending"]
    done = [a for a in approvals if a.get("status") != "pending"]
    cards = []
    for a in pending:
        aid = e(a.get("id"))
        note_id = f"note-{aid}"
        why = a.get("message")
        cards.append(
            "".join([
                f'<article class="card" id="approval-{aid}"><h2>#{aid} {_what(a)}</h2>',
                f'<p class="muted">requested {e(a.get("requested_at"))}</p>',
                f'<blockquote class="why">{e(why)}</blockquote>' if why else "",
                render_diff(str(a.get("diff") or "")),
                '<div class="actions">',
                button_form(f"/approvals/{aid}/approve", "◆ APPR0VE", csrf, tone="go"),
                f'<form class="act deny" method="post" action="/approvals/{aid}/deny">',
                f'{_csrf_field(csrf)}<label for="{note_id}">note to hm1nd</label>',
                f'<input id="{note_id}" name="note" maxlength=2000 placeholder="why not?">',
                '<button type="submit" class="stop">✕ DENY</button></form></div></article>',
            ])
        )  # fmt: skip
    rows = "".join(
        f'<tr id="approval-{e(a.get("id"))}"><td>#{e(a.get("id"))}</td><td>{_what(a)}</td>'
        f"<td>{badge(a.get('status'))}</td><td>{e(a.get('resolved_at') or '')}</td>"
        f"<td>{e(a.get('note') or '')}</td></tr>"
        for a in done
    )
    waiting = "".join(cards) or '<p class="muted">nothing waiting. the hive is calm.</p>'
    history = (
        '<h2>decided</h2><table class="grid"><thead><tr><th>id</th><th>what</th>'
        f"<th>status</th><th>when</th><th>note</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    return f"<h1>appr0vals <small>{len(pending)} pending</small></h1>{waiting}{history}"


def agent_page(
    agent: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    host: str,
    csrf: str,
) -> str:
    name = str(agent.get("name", ""))
    base = f"/agents/{e(name)}"
    port = agent.get("web_port")
    web = f'<a href="http://{e(host)}:{e(port)}/">open web ui :{e(port)} ↗</a>' if port else ""
    toggle = (
        button_form(f"{base}/resume", "▶ RESUME", csrf, tone="go")
        if agent.get("suspended")
        else button_form(f"{base}/suspend", "❚❚ SUSPEND", csrf)
    )
    cond_rows = "".join(
        f"<tr><td>{e(c.get('type'))}</td><td>{badge(c.get('status'))}</td>"
        f"<td>{e(c.get('reason'))}</td><td>{e(c.get('message'))}</td>"
        f"<td>{e(c.get('last_transition'))}</td></tr>"
        for c in agent.get("conditions") or []
    )
    options = "".join(
        f'<option value="{e(h.get("commit"))}">{e(str(h.get("commit"))[:10])} '
        f"{e(h.get('summary'))}</option>"
        for h in history
    )
    rollback = (
        f'<form class="act rollback" method="post" action="{base}/rollback">{_csrf_field(csrf)}'
        f'<label for="rev">roll back to</label><select id="rev" name="rev">{options}</select>'
        '<button type="submit" class="warn">↺ R0LLBACK</button></form>'
        if history
        else ""
    )
    hist_rows = "".join(
        f"<tr><td><code>{e(str(h.get('commit'))[:10])}</code></td><td>{e(h.get('summary'))}</td>"
        f"<td>{e(h.get('author'))}</td><td>{e(_trailers(h.get('trailers')))}</td></tr>"
        for h in history
    )
    ev_rows = "".join(
        f"<tr><td class=when>{e(ev.get('at'))}</td><td class=when>{e(ev.get('kind'))}</td>"
        f"<td class=wide>{e(ev.get('message'))}</td></tr>"
        for ev in events
    )
    suspended = ' <span class="badge warn">suspended</span>' if agent.get("suspended") else ""
    last_error = agent.get("last_error")
    err = f'<p class="flash bad">last error: {e(last_error)}</p>' if last_error else ""
    return (
        f"<h1>{e(name)} {badge(agent.get('phase', '?'))}"
        f"{suspended}</h1>"
        f'<p class="muted">applied <code>{e(agent.get("applied_commit") or "—")}</code> · '
        f"last turn {e(agent.get('last_turn_at') or '—')} · cost {_cost(agent)} {web}</p>{err}"
        f'<div class="actions">{toggle}{rollback}</div>'
        '<h2>conditions</h2><table class="grid"><thead><tr><th>type</th><th>status</th>'
        "<th>reason</th><th>message</th><th>since</th></tr></thead>"
        f"<tbody>{cond_rows}</tbody></table>"
        '<h2>applied history</h2><table class="grid"><thead><tr><th>commit</th><th>summary</th>'
        f"<th>author</th><th>trailers</th></tr></thead><tbody>{hist_rows}</tbody></table>"
        '<h2>events</h2><table class="grid"><thead><tr><th>when</th><th>kind</th>'
        f"<th>message</th></tr></thead><tbody>{ev_rows}</tbody></table>"
    )


def _trailers(t: object) -> str:
    if isinstance(t, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in t.items())
    return ""


def flow_page() -> str:
    return (
        '<h1>fl0w <small id="flow-state">connecting…</small></h1>'
        "<noscript><p class=muted>the live flow needs JavaScript; "
        "<code>hive-c0re events</code> shows it in a terminal.</p></noscript>"
        '<ol id="flow" class="flow" data-stream="/flow/stream" aria-live="polite"></ol>'
    )


def login_page(error: str = "", *, password: bool) -> str:
    what = "password or operator token" if password else "operator token"
    err = f'<p class="flash bad">{e(error)}</p>' if error else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        '<title>login // hyperhive</title><link rel=stylesheet href="/static/hive.css"></head>'
        '<body><main class="login"><h1>hyp3rh1ve<span>//c0re</span></h1>'
        f'{err}<form method="post" action="/login"><label for="secret">{what}</label>'
        '<input id="secret" name="secret" type="password" autocomplete="current-password" '
        'autofocus required><button type="submit" class="go">◆ ENTER</button></form>'
        "</main></body></html>"
    )
