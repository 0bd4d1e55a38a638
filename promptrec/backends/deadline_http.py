"""HTTP calls with one overall deadline each, bounded retries and a cap on the answer's size.

httpx's timeouts apply per network operation: a server that sends one byte a second never trips a read
timeout and can hold a caller for as long as it likes. Here every call runs as a task on a private event
loop (one background thread per client) under `asyncio.timeout`, so the whole call (connecting, sending,
every retry and its back-off, reading headers and body) ends by its deadline, whatever the server does.
Sync callers block on the task; async callers await it from their own loop (`acall`).

Retried, with exponential back-off, while the deadline leaves room: refused or dropped connections and
the statuses a starting or overloaded server answers with (429, 502, 503, 504). Nothing else is retried.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from promptrec.errors import BackendError

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
TRANSIENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)
MAX_BACKOFF_S = 4.0
Result = TypeVar("Result")


class DeadlineClient:
    """Calls one HTTP service; each `call` returns (status, body) or raises BackendError by its deadline.

    Args:
        base_url: prefix of every path.
        timeout_s: overall deadline of one call, retries included.
        max_retries: further attempts after a transient failure.
        max_response_bytes: a longer answer is refused (a broken server cannot exhaust memory).
        unreachable_hint: appended to the error when the service cannot be reached at all.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        max_response_bytes: int = 64 * 2**20,
        unreachable_hint: str = "",
    ) -> None:
        if not timeout_s > 0 or max_retries < 0:
            raise BackendError(f"timeout_s must be > 0 and max_retries >= 0 (got {timeout_s}, {max_retries})")
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_response_bytes = max_response_bytes
        self.unreachable_hint = unreachable_hint
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="promptrec-http", daemon=True)
        self._thread.start()
        # Per-operation timeouts stay as a backstop; the deadline is what bounds a call.
        self._client = httpx.AsyncClient(base_url=base_url, headers=headers or {}, timeout=timeout_s)

    def call(self, method: str, path: str, payload: Any = None) -> tuple[int, bytes]:
        """Blocking call; returns by the deadline."""
        return self._on_loop(self._call(method, path, payload)).result()

    async def acall(self, method: str, path: str, payload: Any = None) -> tuple[int, bytes]:
        """The same call awaited from any event loop (the client's own loop does the work)."""
        return await asyncio.wrap_future(self._on_loop(self._call(method, path, payload)))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._on_loop(self._client.aclose()).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _on_loop(self, coroutine: Coroutine[Any, Any, Result]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _call(self, method: str, path: str, payload: Any) -> tuple[int, bytes]:
        url = f"{self.base_url}{path}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                for attempt in range(self.max_retries + 1):
                    retry_in = min(MAX_BACKOFF_S, 0.25 * 2**attempt) * random.uniform(0.8, 1.2)
                    may_retry = attempt < self.max_retries and loop.time() + retry_in < deadline
                    try:
                        status, body = await self._once(method, path, payload, url)
                    except TRANSIENT_ERRORS as error:
                        if not may_retry:
                            raise BackendError(
                                f"cannot reach {url} ({type(error).__name__}: {error}) after {attempt + 1} "
                                f"attempt(s); {self.unreachable_hint}"
                            ) from error
                    else:
                        if status not in RETRYABLE_STATUSES or not may_retry:
                            return status, body
                    await asyncio.sleep(retry_in)
        except (TimeoutError, httpx.TimeoutException) as error:
            raise BackendError(
                f"{url} gave no complete answer within the deadline of {self.timeout_s:g} s; raise the "
                "timeout (timeout_s / --timeout) or send smaller batches"
            ) from error
        except httpx.HTTPError as error:
            raise BackendError(f"request to {url} failed: {type(error).__name__}: {error}") from error
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _once(self, method: str, path: str, payload: Any, url: str) -> tuple[int, bytes]:
        async with self._client.stream(method, path, json=payload) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_response_bytes:
                raise BackendError(
                    f"{url} announced a {declared}-byte answer; the limit is {self.max_response_bytes}"
                )
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise BackendError(f"{url} sent more than {self.max_response_bytes} bytes; refused")
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)
