"""The service's notion of "now".

mod_callcenter works in whole epoch seconds (reference §0); the core takes ``now`` as an argument.
The service reads time only through ``Clock`` so that tests can run it on trio's ``MockClock``:
``now()`` is trio's clock plus a fixed epoch offset taken once at start, so virtual time in a test
moves the service's epoch seconds too, and sleeping "until second S" is a plain trio deadline.
"""

from __future__ import annotations

import time

import trio


class Clock:
    """Epoch seconds derived from trio's clock (real or mock)."""

    def __init__(self, epoch_at_start: float | None = None) -> None:
        start = time.time() if epoch_at_start is None else epoch_at_start
        # the run's clock object itself: asked several times per call, one call instead of four
        self._trio_time = trio.lowlevel.current_clock().current_time
        self._offset = start - self._trio_time()

    def time(self) -> float:
        """Epoch seconds with fractions."""
        return self._trio_time() + self._offset

    def now(self) -> int:
        """Whole epoch seconds, truncated, as mod_callcenter stores them."""
        return int(self._trio_time() + self._offset)

    def deadline_for(self, epoch_second: int) -> float:
        """The trio deadline at which the epoch second ``epoch_second`` begins."""
        return epoch_second - self._offset
