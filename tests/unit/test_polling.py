"""The suite's polling helper: what it returns, how it gives up, what it refuses."""

from __future__ import annotations

import time

import pytest

from tests.polling import until, wait_until


class Flaky:
    """Falsy for the first ``misses`` calls, then ``value``: state that settles later."""

    def __init__(self, misses: int, value: str = "ready") -> None:
        self.misses = misses
        self.value = value
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return self.value if self.calls > self.misses else None

    async def asynchronously(self) -> str | None:
        return self()


async def test_until_returns_the_first_truthy_value_of_a_sync_check() -> None:
    check = Flaky(3)
    assert await until(check, "the flaky check", interval=0) == "ready"
    assert check.calls == 4


async def test_until_awaits_an_async_check() -> None:
    check = Flaky(2, value="answered")
    assert await until(check.asynchronously, "the async check", interval=0) == "answered"
    assert check.calls == 3


async def test_until_names_what_it_waited_for_and_explains() -> None:
    t0 = time.monotonic()
    with pytest.raises(AssertionError) as failed:
        await until(lambda: False, "the moon to rise", timeout=0.1, explain=lambda: "log: dark")
    assert time.monotonic() - t0 >= 0.1  # never gives up before its timeout
    assert str(failed.value) == "timed out after 0.1 s waiting for: the moon to rise\nlog: dark"


async def test_a_check_that_raises_ends_the_wait_at_once() -> None:
    def exited() -> bool:
        raise AssertionError("the process exited (1)")

    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"the process exited \(1\)"):
        await until(exited, "the process to answer", timeout=30)
    assert time.monotonic() - t0 < 5


def test_wait_until_returns_the_first_truthy_value() -> None:
    check = Flaky(2)
    assert wait_until(check, "the flaky check", interval=0) == "ready"
    assert check.calls == 3


def test_wait_until_times_out_with_the_same_message() -> None:
    with pytest.raises(AssertionError, match=r"^timed out after 0\.05 s waiting for: nothing$"):
        wait_until(lambda: None, "nothing", timeout=0.05)


def test_wait_until_refuses_an_async_check() -> None:
    """A coroutine object is truthy: accepting one would pass without checking anything."""
    check = Flaky(0)
    with pytest.raises(TypeError, match="use until"):
        _ = wait_until(check.asynchronously, "an async check")  # mypy flags this too
    assert check.calls == 0
