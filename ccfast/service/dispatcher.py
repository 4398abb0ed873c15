"""The dispatch loop: ask the core, carry out its decisions, sleep until the next change.

mod_callcenter re-reads its tables every 100 ms (reference §4.1, W1). ccfast instead runs one pass
when something changed (a member joined, an offer ended, an agent's status changed — anyone calls
``poke()``) or when the core's ``next_change(now)`` second arrives. A pass is cheap (the core is
O(log n) per decision), never awaits inside the core, and hands every offer to a new task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import trio

from ..esl._steps import STEPS
from .clock import Clock


class Dispatcher:
    """Drives ``core.dispatch``/``member_timeouts``/``discard_abandoned`` and the wake-ups.

    ``start_offer(offer)`` and ``member_timeout(timeout)`` must not block (they start tasks or set
    flags); ``after_pass()`` flushes the core's events and journal (before the offers start, so
    a pass's events precede its originates); ``after_offers()`` runs last. ``on_pass_time(seconds)``
    receives the time spent inside the core in each pass (``member_timeouts`` +
    ``discard_abandoned`` + ``dispatch``, by ``perf_counter``; not the callbacks nor the flush).

    For dispatch latency, while ``start_offer`` runs: ``prev_pass_at`` is the trio time the
    previous pass began, ``cause_at`` the trio time of what made this pass run — the first
    ``poke()`` after the previous pass began, or the ``next_change`` deadline it slept until
    (the pass start when neither).
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
        self.on_pass_time = on_pass_time
        self.after_offers: Callable[[], None] | None = None  # after the pass started its offers
        self._in_pass = False
        # mod_callcenter's cadence for the baseline mode: a pass every poll_interval, pokes ignored
        self.poll_interval = poll_interval
        self._wake = trio.Event()
        self._wait_scope: trio.CancelScope | None = None  # the loop's sleep until next_change
        self._release_held = False  # a release is held in the current hot-path step
        self._rearm = False  # a pass ran outside the loop: its next_change may be sooner
        self.passes = 0
        self.last_pass: float = 0.0
        self._changed_at: float | None = None  # trio time of the first poke since the last pass began
        self.pass_at = -math.inf  # trio time the current (or last) pass began
        self.prev_pass_at = -math.inf
        self.cause_at = -math.inf

    def poke(self) -> None:
        """Something changed: run a pass as soon as the loop gets the CPU. Inside a hot-path
        step (``esl._steps``) the loop's wake-up waits for the step's end, whose
        ``run_if_poked`` usually has run the pass already."""
        if self._changed_at is None:
            self._changed_at = trio.current_time()
        if STEPS.depth:
            self._hold()
        else:
            self._wake.set()

    def _hold(self) -> None:
        if not self._release_held:
            self._release_held = True
            STEPS.held.append(self._release)

    def _release(self) -> None:
        """End of the step: wake the loop if a change is still unpassed, else move its sleep's
        deadline to the next_change of the state the step's pass left."""
        self._release_held = False
        if self._changed_at is not None:
            self._wake.set()
        elif self._rearm:
            self._rearm = False
            scope = self._wait_scope
            if scope is not None:
                scope.deadline = self._deadline()

    def _deadline(self) -> float:
        next_second = self.core.next_change(self.clock.now())
        return math.inf if next_second is None else self.clock.deadline_for(next_second)

    def run_if_poked(self) -> None:
        """Run the pass now if something changed since the last one began (the end of a step of
        the hot path: a batch of callers joined, an offer ended), instead of one scheduler batch
        later in the loop's task; the loop then finds little to do. Not in the polling baseline
        mode, and never inside a pass."""
        if self._changed_at is not None and not self._in_pass and self.poll_interval is None:
            self.run_pass()
            if self._wait_scope is not None:  # the loop sleeps on a deadline from before this pass
                self._rearm = True
                if STEPS.depth:
                    self._hold()
                else:
                    self._release()

    def run_pass(self) -> int:
        """One synchronous pass; returns the number of offers started."""
        self._in_pass = True
        try:
            return self._pass()
        finally:
            self._in_pass = False

    def _pass(self) -> int:
        now = self.clock.now()
        started = trio.current_time()
        self.prev_pass_at, self.pass_at = self.pass_at, started
        self.cause_at = started if self._changed_at is None else self._changed_at
        self._changed_at = None  # pokes from here on are for the next pass
        core = self.core
        t0 = time.perf_counter()
        timeouts = core.member_timeouts(now)
        t1 = time.perf_counter()
        for timeout in timeouts:
            self._member_timeout(timeout)
        t2 = time.perf_counter()
        core.discard_abandoned(now)
        offers = core.dispatch(now)
        t3 = time.perf_counter()
        self._after_pass()  # the pass's events go out before its originates
        for offer in offers:
            self._start_offer(offer)
        if self.after_offers is not None:
            self.after_offers()
        self.passes += 1
        self.last_pass = self.clock.time()
        if self.on_pass_time is not None:
            self.on_pass_time((t1 - t0) + (t3 - t2))
        return len(offers)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self.poll_interval is not None:
            while True:
                self.run_pass()
                await trio.sleep(self.poll_interval)
        first = True
        while True:
            self._wake = trio.Event()
            if first or self._changed_at is not None:  # else run_if_poked ran it already
                self.run_pass()
            first = False
            self._rearm = False
            with trio.move_on_at(self._deadline()) as scope:
                self._wait_scope = scope
                try:
                    await self._wake.wait()
                finally:
                    self._wait_scope = None
            if scope.cancelled_caught and self._changed_at is None:
                self._changed_at = scope.deadline  # a timer (wrap-up end, ring timeout...) made it due
            # let a burst of pokes (e.g. 50 callers joining) coalesce into one pass
            await trio.sleep(0)
