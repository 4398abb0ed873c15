"""trio ↔ asyncio glue for the database drivers (aiosqlite, asyncpg run on asyncio).

Rules this module enforces (the traps of trio-asyncio, see docs/store.md):

* every database operation — a whole transaction included — is ONE asyncio coroutine behind ONE
  ``aio_as_trio`` call; nothing awaits a driver object from trio directly;
* that call is shielded from trio cancellation: a trio cancel would cancel the asyncio task in the
  middle of COMMIT/ROLLBACK and leave the connection unusable. Instead each operation carries its
  own asyncio-side timeout, and on any failure the engine drops (PostgreSQL: terminates) the
  connection, so a half-finished transaction is never reused;
* no exception escapes into asyncio's loop machinery: the coroutine catches everything and hands it
  back to trio, where it is re-raised.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import trio
import trio_asyncio

from .base import StoreUnavailable

open_loop = trio_asyncio.open_loop


class NoLoop(RuntimeError):
    """The store was used outside a trio-asyncio loop: a programming error, never retried."""


def _require_loop() -> None:
    if trio_asyncio.current_loop.get(None) is None:
        raise NoLoop(
            "ccfast.store needs a trio-asyncio loop: run it inside `async with ccfast.store.aio.open_loop():`"
        )


async def run(fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float | None = None) -> Any:
    """Run the asyncio coroutine function ``fn(*args)`` to completion from trio.

    Shielded from trio cancellation (bounded by ``timeout`` seconds on the asyncio side, which
    raises :class:`StoreUnavailable`). Exceptions of ``fn`` are re-raised in trio.
    """
    _require_loop()

    async def guarded() -> tuple[bool, Any]:
        try:
            if timeout is None:
                return True, await fn(*args)
            return True, await asyncio.wait_for(fn(*args), timeout)
        except asyncio.TimeoutError:
            return False, StoreUnavailable(f"database operation timed out after {timeout:g} s")
        except asyncio.CancelledError:
            return False, StoreUnavailable("database operation cancelled (asyncio loop closing)")
        except Exception as exc:  # handed to trio, never to the asyncio loop
            return False, exc

    with trio.CancelScope(shield=True):
        ok, value = await trio_asyncio.aio_as_trio(guarded)()
    if not ok:
        raise value
    return value
