"""Logic written once for blocking and asyncio callers.

A plan is a generator that yields each step of I/O it needs (e.g. backend calls) and receives that step's
answer through `send`, or the error answering it raised through `throw` (so the plan may handle it, e.g. fall
back); it returns its result. `drive` answers the steps by blocking calls, `adrive` by
awaiting coroutines, so the logic between the steps (batching, decoding, fallbacks) cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import TypeVar

Step = TypeVar("Step")
Answer = TypeVar("Answer")
Result = TypeVar("Result")


def drive(plan: Generator[Step, Answer, Result], answer: Callable[[Step], Answer]) -> Result:
    """Run `plan` to its result, answering each step with `answer(step)`."""
    resume, reply = plan.send, None
    while True:
        try:
            step = resume(reply)
        except StopIteration as finished:
            return finished.value
        try:
            resume, reply = plan.send, answer(step)
        except Exception as error:
            resume, reply = plan.throw, error


async def adrive(
    plan: Generator[Step, Answer, Result], answer: Callable[[Step], Awaitable[Answer]]
) -> Result:
    """Run `plan` to its result, answering each step with `await answer(step)`."""
    resume, reply = plan.send, None
    while True:
        try:
            step = resume(reply)
        except StopIteration as finished:
            return finished.value
        try:
            resume, reply = plan.send, await answer(step)
        except Exception as error:
            resume, reply = plan.throw, error
