"""The dispatch loop: ask the core, carry out its decisions, sleep until the next change.

mod_callcenter re-reads its tables every 100 ms (reference §4.1, W1). ccfast instead runs one pass
when something changed (a member joined, an offer ended, an agent's status changed — anyone calls
``poke()``) or when the core's ``next_change(now)`` second arrives. A pass is cheap (the core is
O(log n) per decision), never awaits inside the core, and hands every offer to a new task.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from .clock import Clock


class Dispatcher:
    """Drives ``core.dispatch``/``member_timeouts``/``discard_abandoned`` and the wake-ups.

    ``start_offer(offer)`` and ``member_timeout(timeout)`` must not block (they start tasks or set
    flags); ``after_pass()`` flushes the core's events and journal.
    """

    def __init__(
        self,
        core,
        clock: Clock,
        *,
        start_offer: Callable,
        member_timeout: Callable,
        after_pass: Callable[[], None],
        on_pass_time: Callable[[float], None] | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self.core = core
        self.clock = clock
        self._start_offer = start_offer
        self._member_timeout = member_timeout
        self._after_pass = after_pass
        self._on_pass_time = on_pass_time
        # mod_callcenter's cadence for the baseline mode: a pass every poll_interval, pokes ignored
        self.poll_interval = poll_interval
        self._wake = trio.Event()
        self.passes = 0
        self.last_pass: float = 0.0

    def poke(self) -> None:
        """Something changed: run a pass as soon as the loop gets the CPU."""
        self._wake.set()

    def run_pass(self) -> int:
        """One synchronous pass; returns the number of offers started."""
        now = self.clock.now()
        started = trio.current_time()
        for timeout in self.core.member_timeouts(now):
            self._member_timeout(timeout)
        self.core.discard_abandoned(now)
        offers = self.core.dispatch(now)
        for offer in offers:
            self._start_offer(offer)
        self._after_pass()
        self.passes += 1
        self.last_pass = self.clock.time()
        if self._on_pass_time is not None:
            self._on_pass_time(trio.current_time() - started)
        return len(offers)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self.poll_interval is not None:
            while True:
                self.run_pass()
                await trio.sleep(self.poll_interval)
        while True:
            self._wake = trio.Event()
            self.run_pass()
            next_second = self.core.next_change(self.clock.now())
            deadline = math.inf if next_second is None else self.clock.deadline_for(next_second)
            with trio.move_on_at(deadline):
                await self._wake.wait()
            # let a burst of pokes (e.g. 50 callers joining) coalesce into one pass
            await trio.sleep(0)
