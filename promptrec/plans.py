"""Logic written once for blocking and asyncio callers.

A plan is a generator that yields each step of I/O it needs (e.g. backend calls) and receives that step's
answer through `send`; it returns its result. `drive` answers the steps by blocking calls, `adrive` by
awaiting coroutines, so the logic between the steps (batching, decoding, fallbacks) cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

Step = TypeVar("Step")
Answer = TypeVar("Answer")
Result = TypeVar("Result")


def drive(plan: Generator[Step, Answer, Result], answer: Callable[[Step], Answer]) -> Result:
    """Run `plan` to its result, answering each step with `answer(step)`."""
    reply: Any = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration as finished:
            return finished.value
        reply = answer(step)


async def adrive(
    plan: Generator[Step, Answer, Result], answer: Callable[[Step], Awaitable[Answer]]
) -> Result:
    """Run `plan` to its result, answering each step with `await answer(step)`."""
    reply: Any = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration as finished:
            return finished.value
        reply = await answer(step)
