"""The dashboard in process: session, CSRF, pages and actions over real approvals."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hyperhive.errors import HiveError
from hyperhive.paths import Paths
from hyperhive.reconciler.dashboard.app import DashboardApp, DashboardSettings
from hyperhive.reconciler.dashboard.auth import AuthConfigError, OperatorAuth
from hyperhive.reconciler.dashboard.bus import StatusBus
from hyperhive.reconciler.dashboard.extension import check_config
from hyperhive.reconciler.dashboard.relay import BrokerLink
from tests.dashboard.fakeadmin import FakeAdmin, agent_row
from tests.dashboard.repos import Hive, agent_yaml


@pytest.fixture
def auth(tmp_path: Path) -> OperatorAuth:
    return OperatorAuth.load(Paths.from_home(tmp_path).operator_token, None, "127.0.0.1")


@pytest.fixture
async def client(
    hive: Hive, auth: OperatorAuth, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    admin = FakeAdmin(hive.queue, [agent_row("alice", 8123), agent_row("hm1nd", 8000)])
    app = DashboardApp(admin, auth, StatusBus(), BrokerLink(tmp_path / "no-broker.sock"))
    transport = httpx.ASGITransport(app=app.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7000") as c:
        yield c


async def login(client: httpx.AsyncClient, auth: OperatorAuth) -> None:
    r = await client.get(f"/approvals?token={auth.token}")
    assert r.status_code == 303 and r.headers["location"] == "/approvals"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")


def test_token_file_is_created_private(tmp_path: Path, auth: OperatorAuth) -> None:
    path = Paths.from_home(tmp_path).operator_token
    assert path.read_text().strip() == auth.token and len(auth.token) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    again = OperatorAuth.load(path, None, "127.0.0.1")
    assert again.token == auth.token and again.session == auth.session


def test_non_loopback_needs_a_password(tmp_path: Path) -> None:
    token = tmp_path / "operator.token"
    with pytest.raises(AuthConfigError, match="password_file"):
        OperatorAuth.load(token, None, "0.0.0.0")
    pw = tmp_path / "pw"
    pw.write_text("hunter22\n")
    assert OperatorAuth.load(token, pw, "0.0.0.0").password == "hunter22"
    with pytest.raises(AuthConfigError, match="cannot read"):
        OperatorAuth.load(token, tmp_path / "missing", "127.0.0.1")


def test_settings_from_config(tmp_path: Path) -> None:
    s = DashboardSettings.from_config({"listen": "0.0.0.0", "port": 7100,
                                       "password_file": "/etc/pw"})  # fmt: skip
    assert (s.host, s.port, s.password_file) == ("0.0.0.0", 7100, Path("/etc/pw"))
    with pytest.raises(Exception, match="unknown option"):
        DashboardSettings.from_config({"prot": 1})


async def test_session_required(client: httpx.AsyncClient, auth: OperatorAuth) -> None:
    assert (await client.get("/healthz")).status_code == 200
    r = await client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert (await client.get("/?token=wrong")).status_code == 401
    assert (await client.post("/approvals/1/approve", data={"csrf": auth.csrf})).status_code == 401
    await login(client, auth)
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def test_rotating_the_token_file_revokes_sessions(
    client: httpx.AsyncClient, auth: OperatorAuth, tmp_path: Path
) -> None:
    """``up`` rewrites the token after c0re started: the file, not memory, is the truth."""
    await login(client, auth)
    old = auth.token
    path = Paths.from_home(tmp_path).operator_token
    path.write_text("a-brand-new-token-from-up\n")
    assert auth.token == "a-brand-new-token-from-up"
    assert (await client.get("/", headers={"X-Hive-Partial": "1"})).status_code == 303
    assert (await client.get(f"/?token={old}")).status_code == 401
    assert (await client.get("/?token=a-brand-new-token-from-up")).status_code == 303
    assert (await client.get("/")).status_code == 200


async def test_login_form(client: httpx.AsyncClient, auth: OperatorAuth) -> None:
    assert "operator token" in (await client.get("/login")).text
    assert (await client.post("/login", data={"secret": "nope"})).status_code == 403
    r = await client.post("/login", data={"secret": auth.token})
    assert r.status_code == 303 and "hive_session=" in r.headers["set-cookie"]
    assert (await client.get("/")).status_code == 200


async def test_agents_page(client: httpx.AsyncClient, auth: OperatorAuth, hive: Hive) -> None:
    hive.queue.request_spawn("zed", {"model": "haiku"})
    await login(client, auth)
    html = (await client.get("/")).text
    assert 'href="/agents/alice"' in html
    assert 'href="http://127.0.0.1:8123/"' in html  # the agent's web UI port
    assert "$0.0123" in html and "2026-11-26T10:01:00.000Z" in html
    assert "1 approval waiting" in html
    assert 'class="count">1<' in html


async def test_approve_needs_csrf_then_applies(
    client: httpx.AsyncClient, auth: OperatorAuth, hive: Hive
) -> None:
    approval_id = hive.queue.request_apply_commit(
        hive.propose({"alice/agent.yaml": agent_yaml("alice", model="opus")},
                     "Give alice opus\n\nShe reviews <code> and needs the big model.")
    )  # fmt: skip
    await login(client, auth)
    page = (await client.get("/approvals")).text
    assert '<span class="add">+  model: opus</span>' in page
    assert "◆ APPR0VE" in page and "✕ DENY" in page
    assert "She reviews &lt;code&gt; and needs the big model." in page  # hm1nd's reason
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf and csrf.group(1) == auth.csrf
    for forged in ({}, {"csrf": "x" * 64}):
        r = await client.post(f"/approvals/{approval_id}/approve", data=forged)
        assert r.status_code == 403
    assert hive.queue.get(approval_id).status == "pending"
    r = await client.post(f"/approvals/{approval_id}/approve", data={"csrf": auth.csrf})
    assert r.status_code == 303 and r.headers["location"].startswith("/approvals?msg=")
    assert hive.queue.get(approval_id).status == "applied"
    assert "applied" in (await client.get(r.headers["location"])).text


async def test_agent_origins_cannot_act(
    client: httpx.AsyncClient, auth: OperatorAuth, hive: Hive
) -> None:
    """An agent's page runs in the operator's browser on a same-site origin: its token
    and its origin are worth nothing on the dashboard."""
    approval_id = hive.queue.request_spawn("zed", {"model": "haiku"})
    await login(client, auth)
    url = f"/approvals/{approval_id}/approve"
    r = await client.post(url, data={"csrf": auth.agent_csrf("alice")})
    assert r.status_code == 403
    r = await client.post(
        url, data={"csrf": auth.csrf}, headers={"Origin": "http://127.0.0.1:8123"}
    )
    assert r.status_code == 403 and "cross-origin" in r.text
    assert hive.queue.get(approval_id).status == "pending"
    r = await client.post(
        url, data={"csrf": auth.csrf}, headers={"Origin": "http://127.0.0.1:7000"}
    )
    assert r.status_code == 303
    assert hive.queue.get(approval_id).status == "applied"


async def test_deny_by_fetch_answers_json(
    client: httpx.AsyncClient, auth: OperatorAuth, hive: Hive
) -> None:
    approval_id = hive.queue.request_spawn("zed", {"model": "haiku"})
    await login(client, auth)
    r = await client.post(f"/approvals/{approval_id}/deny", headers={"X-Hive-Fetch": "1"},
                          data={"csrf": auth.csrf, "note": "<script>no</script>"})  # fmt: skip
    assert r.status_code == 200 and r.json()["approval"]["status"] == "denied"
    assert hive.told[-1].endswith("<script>no</script>")
    page = (await client.get("/approvals")).text
    assert "&lt;script&gt;no&lt;/script&gt;" in page and "<script>no" not in page
    r = await client.post(f"/approvals/{approval_id}/approve", headers={"X-Hive-Fetch": "1"},
                          data={"csrf": auth.csrf})  # fmt: skip
    assert r.status_code == 409 and "not pending" in r.json()["error"]["message"]


async def test_agent_page_and_actions(client: httpx.AsyncClient, auth: OperatorAuth) -> None:
    await login(client, auth)
    html = (await client.get("/agents/alice")).text
    assert "❚❚ SUSPEND" in html and "↺ R0LLBACK" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert (await client.get("/agents/nobody")).status_code == 404
    assert (await client.get("/agents/..%2Fetc")).status_code in (404, 405)
    r = await client.post("/agents/alice/suspend", data={"csrf": auth.csrf})
    assert r.status_code == 303
    assert "▶ RESUME" in (await client.get("/agents/alice")).text
    r = await client.post("/agents/alice/explode", data={"csrf": auth.csrf},
                          headers={"X-Hive-Fetch": "1"})  # fmt: skip
    assert r.status_code == 404


async def test_partial_refresh_and_static(client: httpx.AsyncClient, auth: OperatorAuth) -> None:
    await login(client, auth)
    part = (await client.get("/", headers={"X-Hive-Partial": "1"})).text
    assert part.startswith("<h1>ag3nts") and "<html" not in part
    assert "EventSource" in (await client.get("/static/hive.js")).text
    assert "--green" in (await client.get("/static/hive.css")).text


def test_bad_dashboard_config_stops_serve_early(tmp_path: Path) -> None:
    """``serve`` checks [dashboard] with the rest of its config: one line, no traceback."""
    check_config({"dashboard": {"listen": "127.0.0.1", "port": 0}})
    check_config({"dashboard": {"listen": "0.0.0.0", "enable": False}})
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    check_config({"dashboard": {"listen": "0.0.0.0", "password_file": str(pw)}})
    cases: list[tuple[dict[str, Any], str]] = [
        ({"listen": "0.0.0.0"}, "without"),
        ({"port": 70000}, "out of range"),
        ({"password_file": str(tmp_path / "nope")}, "cannot read"),
        ({"colour": "green"}, "unknown option"),
    ]
    for bad, why in cases:
        with pytest.raises(HiveError, match=why):
            check_config({"dashboard": bad})


async def test_password_login(hive: Hive, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    auth = OperatorAuth.load(tmp_path / "tok", pw, "0.0.0.0")
    app = DashboardApp(FakeAdmin(hive.queue, []), auth, StatusBus(), BrokerLink(tmp_path / "b"))
    transport = httpx.ASGITransport(app=app.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:7000") as c:
        assert "password or operator token" in (await c.get("/login")).text
        assert (await c.post("/login", data={"secret": "wrong horse"})).status_code == 403
        r = await c.post("/login", data={"secret": "correct horse"})
        assert r.status_code == 303 and "hive_session=" in r.headers["set-cookie"]
        assert (await c.get("/approvals")).status_code == 200
        for _ in range(9):  # ten wrong secrets in a minute lock /login for a minute
            assert (await c.post("/login", data={"secret": "guess"})).status_code == 403
        r = await c.post("/login", data={"secret": "correct horse"})
        assert r.status_code == 429 and "too many wrong secrets" in r.text
