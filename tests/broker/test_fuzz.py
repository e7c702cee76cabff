"""Hypothesis throws random bytes and random JSON at every endpoint of a running broker.

Every answer must be a 2xx or a 4xx carrying ``{"error": {"code", "message"}}``
— never a 5xx, never a dropped connection — and the process must stay up.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.broker.client import BrokerProcess

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
AGENT = "fz"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
field_names = st.sampled_from(["to", "body", "key", "id", "from"])
shaped = st.dictionaries(field_names, json_values | st.sampled_from([AGENT, "operator", 1]))
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    shaped.map(lambda v: json.dumps(v).encode()),
)


@dataclass
class Target:
    proc: BrokerProcess
    agent: httpx.Client
    control: httpx.Client


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    proc = BrokerProcess(tmp_path_factory.mktemp("fuzz") / "hive").start()
    try:
        with _client(proc.paths.broker_sock) as control:
            assert control.put(f"/mailboxes/{AGENT}").status_code == 201
            with _client(proc.paths.mailbox_sock(AGENT)) as agent:
                yield Target(proc, agent, control)
    finally:
        assert proc.stop() == 0


def _client(sock: Path) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://broker", timeout=10
    )


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        err: Any = r.json()["error"]
        assert isinstance(err["code"], str)
        assert isinstance(err["message"], str)


def positive_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return not math.isnan(value) and value > 0


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(["/send", "/ack", "/nack", "/renew", "/recv?wait=0", "/healthz", "/x"]),
    body=bodies,
)
def test_agent_socket_survives_anything(
    broker: Target, method: str, path: str, body: bytes
) -> None:
    check(broker.agent.request(method, path, content=body))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.sampled_from(["/send", "/messages", "/stats", "/healthz", "/mailboxes/"]),
    tail=st.text(max_size=12),
    body=bodies,
)
def test_control_socket_survives_anything(
    broker: Target, method: str, path: str, tail: str, body: bytes
) -> None:
    url = path + tail if path == "/mailboxes/" else path
    assume(url != f"/mailboxes/{AGENT}")
    try:
        r = broker.control.request(method, url, content=body)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        return  # the client refused to send it; nothing reached the broker
    check(r)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["after", "limit", "agent", "wait", "junk"]), st.text(max_size=12)
    ),
    last_event_id=st.binary(max_size=12),
)
def test_query_and_header_fuzz(
    broker: Target, params: dict[str, str], last_event_id: bytes
) -> None:
    assume(not positive_number(params.get("wait", "")))
    check(broker.agent.get("/recv", params=params))
    check(broker.control.get("/messages", params=params))
    try:
        headers = [(b"Last-Event-ID", last_event_id)]
        with broker.control.stream("GET", "/stream", headers=headers) as r:
            if r.status_code != 200:
                r.read()
                check(r)
    except httpx.LocalProtocolError:
        return  # not a valid header value; never sent


@FUZZ
@given(junk=st.binary(max_size=60))
def test_malformed_http_gets_a_json_error(broker: Target, junk: bytes) -> None:
    """Garbage in the header block is refused by the HTTP parser — with a JSON body too."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(broker.proc.paths.mailbox_sock(AGENT)))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: b\r\nx-junk: " + junk + b"\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        assert status in (200, 400), reply
        if status == 400:
            while len(body) < int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]):
                body += sock.recv(65536)
            assert json.loads(body)["error"]["code"] == "bad_request"


def test_still_up_after_fuzzing(broker: Target) -> None:
    assert broker.proc.alive()
    assert broker.proc.healthy()
