"""The turn loop: lease a message, wake claude with it, ack or nack by the outcome.

At-least-once delivery lives in the broker; the loop's job is to never ack
a turn that failed and never leave a lease behind. ``inflight.json`` records
the leased id and claude's process group before claude can do anything, so a
harness killed mid-turn kills the orphaned group and nacks the id on its next
start, and the broker redelivers at once instead of after the lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from hyperhive.errors import HiveError
from hyperhive.harness import events as ev
from hyperhive.harness.agent_config import AgentConfig
from hyperhive.harness.broker_client import BrokerClient, Message
from hyperhive.harness.claude_runner import (
    ClaudeSettings,
    TurnOutcome,
    claude_argv,
    claude_env,
    kill_group,
    run_claude,
    write_mcp_config,
)
from hyperhive.harness.status import StatusFile

log = logging.getLogger(__name__)
RECV_WAIT = 30.0
RETRY_PAUSE = 0.5
MAX_RETRY_PAUSE = 5.0
COMPACT = "/compact"
T = TypeVar("T")
RESULT_FIELDS = ("result", "is_error", "num_turns", "duration_ms", "total_cost_usd", "usage")


def wake_prompt(cfg: AgentConfig, message: Message) -> str:
    """The user message of a turn: who I am, who wrote, the body verbatim, how to answer."""
    again = f" (delivery attempt {message.attempt})" if message.attempt > 1 else ""
    return (
        f"You are {cfg.name}, an agent of hyperhive.\n"
        f"Message {message.id} from {message.sender}:\n"
        f"<<<BODY\n{message.body}\nBODY>>>\n\n"
        f"It was sent at {message.sent_at}{again}. To answer, call the hive tool `send` "
        f'with to="{message.sender}"; your plain text reply reaches nobody.'
    )


class TurnLoop:
    def __init__(
        self,
        cfg: AgentConfig,
        broker: BrokerClient,
        log_: ev.EventLog,
        status: StatusFile,
        logged_in: asyncio.Event,
        *,
        settings: ClaudeSettings | None = None,
        renew_every: float = 60.0,
        direct_mcp: bool = False,
    ) -> None:
        self.cfg = cfg
        self.broker = broker
        self.events = log_
        self.status = status
        self.logged_in = logged_in
        self.settings = settings or ClaudeSettings()
        self.renew_every = renew_every
        self.direct_mcp = direct_mcp
        self._stopping = False
        self._current: asyncio.Future[Any] | None = None
        self._turn = log_.last_turn()

    # --- crash recovery -------------------------------------------------------
    def _record_inflight(self, message_id: int, pgid: int | None) -> None:
        tmp = self.cfg.inflight_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"id": message_id, "pgid": pgid}))
        os.replace(tmp, self.cfg.inflight_file)

    async def recover(self) -> None:
        """Kill a group and nack a lease a previous run left behind."""
        try:
            data = json.loads(self.cfg.inflight_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            data = {}
        pgid, message_id = data.get("pgid"), data.get("id")
        if isinstance(pgid, int) and pgid > 1:
            kill_group(pgid)
        if isinstance(message_id, int):
            try:
                await self.broker.nack(message_id)
            except HiveError as e:  # the lease may be gone already (broker restart)
                log.info("nack of leftover message %s: %s", message_id, e.message)
            self.events.append(
                self._turn,
                ev.NOTE,
                {"text": f"recovered: message {message_id} nacked after a crash"},
            )
        self.cfg.inflight_file.unlink(missing_ok=True)

    # --- the loop -------------------------------------------------------------
    def stop(self) -> None:
        """Stop between steps: a running turn's claude is stopped and its message nacked."""
        self._stopping = True
        if self._current is not None:
            self._current.cancel()

    async def _interruptible(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a step :meth:`stop` may cut short; the bookkeeping around it always finishes."""
        task = asyncio.ensure_future(coro)
        self._current = task
        try:
            return await task
        finally:
            self._current = None

    @staticmethod
    def _cancelled_from_outside() -> bool:
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    async def run(self) -> None:
        await self.recover()
        pause = 0.0
        while not self._stopping:
            try:
                if pause:  # back off from a broker that is not there (yet)
                    await self._interruptible(asyncio.sleep(pause))
                await self._interruptible(self.logged_in.wait())
                message = await self._interruptible(self.broker.recv(RECV_WAIT))
            except asyncio.CancelledError:
                if self._cancelled_from_outside():
                    raise
                return
            except HiveError as e:
                if not pause:
                    log.warning("recv failed (retrying with backoff): %s", e.message)
                pause = min(max(pause * 2, RETRY_PAUSE), MAX_RETRY_PAUSE)
                continue
            if pause:
                log.info("broker reachable again")
                pause = 0.0
            if message is not None:
                await self.handle(message)

    async def handle(self, message: Message) -> bool:
        """One message, one turn (plus a compaction and one retry when the prompt is too long)."""
        leased = time.time()
        self._turn += 1
        turn = self._turn
        self._record_inflight(message.id, None)
        self.status.status.busy = True
        self.status.write()
        self.events.append(turn, ev.TURN_START, {"message": message.to_json(), "leased_at": leased})
        mcp_config = write_mcp_config(self.cfg, direct=self.direct_mcp)
        prompt = wake_prompt(self.cfg, message)
        claude_seconds = 0.0

        async def attempt(text: str) -> TurnOutcome:
            nonlocal claude_seconds
            started = time.monotonic()
            outcome = await self._claude(turn, message.id, text, mcp_config)
            claude_seconds += time.monotonic() - started
            self.status.status.add_usage(outcome.result)
            return outcome

        async def attempts() -> TurnOutcome:
            outcome = await attempt(prompt)
            if outcome.prompt_too_long:
                self.events.append(turn, ev.NOTE, {"text": "prompt is too long: compacting once"})
                await attempt(COMPACT)
                outcome = await attempt(prompt)
            return outcome

        renewer = asyncio.create_task(self._renew(message.id))
        try:
            outcome = await self._interruptible(attempts())
        except asyncio.CancelledError:
            if self._cancelled_from_outside():
                raise  # inflight.json stays: the next start nacks the message
            outcome = TurnOutcome(exit_code=None, stopped=True)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        result = outcome.result or {}
        end: dict[str, Any] = {k: result.get(k) for k in RESULT_FIELDS}
        end.update(
            ok=outcome.ok,
            message_id=message.id,
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
            error=outcome.error,
            claude_seconds=round(claude_seconds, 4),
            harness_seconds=round(time.time() - leased - claude_seconds, 4),
            ended_at=time.time(),
        )
        self.events.append(turn, ev.TURN_END, end)
        self.status.status.count_turn()
        self.status.status.busy = False
        self.status.write()
        try:
            if outcome.ok:
                await self.broker.ack(message.id)
            else:
                await self.broker.nack(message.id)
        except HiveError as e:
            self.events.append(turn, ev.NOTE, {"text": f"ack/nack failed: {e.message}"})
        self.cfg.inflight_file.unlink(missing_ok=True)
        return outcome.ok

    async def _claude(
        self, turn: int, message_id: int, prompt: str, mcp_config: Any
    ) -> TurnOutcome:
        async def on_start(pgid: int) -> None:
            self._record_inflight(message_id, pgid)
            self.events.append(
                turn, ev.NOTE, {"text": "claude started", "pid": pgid, "started_at": time.time()}
            )

        async def on_line(data: dict[str, Any]) -> None:
            self.events.append(turn, ev.STREAM, data)

        return await run_claude(
            claude_argv(self.cfg, self.settings, mcp_config),
            prompt=prompt,
            cwd=self.cfg.workdir,
            env=claude_env(self.cfg),
            timeout=self.settings.timeout,
            grace=self.settings.grace,
            on_line=on_line,
            on_start=on_start,
        )

    async def _renew(self, message_id: int) -> None:
        """Keep the lease alive while a long turn runs."""
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self.broker.renew(message_id)
            except HiveError as e:
                log.warning("renew of message %s failed: %s", message_id, e.message)
