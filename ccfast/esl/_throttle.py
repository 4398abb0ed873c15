"""Failure logging that stays cheap when everything fails at once.

When a FreeSWITCH link drops under load, thousands of tasks fail within a second with the same
error; formatting a traceback costs ~1 ms each, so logging every one of them starves the process
that should be recovering (a bench run at 300 calls/s once wrote over a million traceback lines).

:class:`FailureLog` keys failures by ``(what, exception type)``. The first failure of a key in each
``traceback_every`` seconds is logged with its traceback; the others are counted, and at most one
summary line per ``interval`` per key says how many there were (``task X failed 412 times in the
last 1.0 s, last: ConnectionLost(...)``). Counts still pending are written by :meth:`flush`
(call it at shutdown, or let the next failure of the key do it). ``total`` counts every failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class FailureLog:
    """Rate-limited, aggregated error logging (see the module docstring)."""

    def __init__(self, logger: logging.Logger, *, interval: float = 1.0, traceback_every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.traceback_every = traceback_every
        self.clock = clock
        self.total = 0
        # key -> [suppressed count, window start, last traceback time, last exception]
        self._keys: dict[tuple[str, type], list] = {}

    def failed(self, what: str, exc: BaseException) -> None:
        """Record one failure of ``what`` (call from the ``except`` block: the traceback is
        taken from ``exc``)."""
        self.total += 1
        now = self.clock()
        key = (what, type(exc))
        state = self._keys.get(key)
        if state is None:
            self._keys[key] = [0, now, now, None]
            self.logger.error("%s failed", what, exc_info=exc)
            return
        if now - state[2] >= self.traceback_every:
            self._summary(key, state, now)
            state[2] = now
            self.logger.error("%s failed", what, exc_info=exc)
            return
        state[0] += 1
        state[3] = exc
        if now - state[1] >= self.interval:
            self._summary(key, state, now)

    def _summary(self, key: tuple[str, type], state: list, now: float) -> None:
        if state[0]:
            self.logger.error("%s failed %d times in the last %.1f s, last: %r",
                              key[0], state[0], now - state[1], state[3])
        state[0] = 0
        state[1] = now
        state[3] = None

    def flush(self) -> None:
        """Write the summary lines still pending."""
        now = self.clock()
        for key, state in self._keys.items():
            self._summary(key, state, now)
