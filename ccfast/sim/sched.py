"""One timer heap driven by one trio task: no task or sleep per timer, no polling.

``call_later``/``call_at`` are synchronous and O(log n); cancelling is O(1) (lazy deletion).
The runner sleeps in a cancel scope whose deadline is moved earlier when a sooner timer is added.
Callbacks run in the runner task and must not block.

The same task also serves an optional I/O source (``Scheduler.io``: the callers' socket hub):
each turn runs the timers now due, then ``io.poll()`` (ready sockets), then the ``call_soon``
callbacks, then ``io.flush()`` (one write per connection for all of it), and sleeps until the next
timer or until ``io.fd`` is readable. With ``io_block`` set, a busy scheduler waits in
``io.wait(seconds)`` (the io source's own epoll: True when something is ready) and lets the other
trio tasks run at one checkpoint per turn, which costs less than a trio wait per turn; they then
run at most ``io_block`` late. ``resolution`` (seconds) rounds the wake-up up to a grid so
timers due close together run in one turn (they still run in deadline order, each at most
``resolution`` late): under load that saves a trio wake-up per timer.
"""

from __future__ import annotations

import heapq
import logging
import math
from typing import Any, Callable

import trio

log = logging.getLogger("ccfast.sim")


class Timer:
    __slots__ = ("when", "fn", "args", "cancelled", "owner")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple, owner: "Scheduler"):
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False
        self.owner = owner

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.args = ()          # let go of what the callback would have used
            self.fn = None
            o = self.owner
            if o is not None:
                o._cancelled += 1


class Scheduler:
    def __init__(self, resolution: float = 0.0) -> None:
        self.resolution = resolution
        self.io = None              # .fd, .poll(), .flush(), .wait(): see the module docstring
        # > 0: while busy, wait for the io source in its own epoll for up to this many seconds
        # instead of a trio wait (see _run); other trio tasks run between such waits
        self.io_block = 0.0
        self.in_batch = False       # a turn is running (writes wait for its end)
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self._scope: trio.CancelScope | None = None
        self._soon: list[tuple[Callable[..., Any], tuple]] = []
        self._cancelled = 0     # cancelled timers still in the heap (deleted lazily)
        self.errors = 0
        # trio.current_time(); while run() runs, the run's clock read directly (same value, a
        # few wrapper calls fewer: it is read for every timer and record)
        self.now: Callable[[], float] = trio.current_time

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` after the timers now due (at the end of the current batch when
        called from a timer callback; at the runner's next turn otherwise)."""
        self._soon.append((fn, args))
        sc = self._scope
        if sc is not None:
            sc.deadline = -math.inf

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Timer:
        t = Timer(when, fn, args, self)
        self._seq += 1
        heap = self._heap
        if self._cancelled > 1024 and self._cancelled * 2 > len(heap):
            # mostly cancelled timers (e.g. long first-command timeouts of connected callers)
            heap[:] = [e for e in heap if not e[2].cancelled]
            heapq.heapify(heap)
            self._cancelled = 0
        heapq.heappush(heap, (when, self._seq, t))
        sc = self._scope
        if sc is not None and when < sc.deadline:
            sc.deadline = self._grid(when)
        return t

    def _grid(self, when: float) -> float:
        r = self.resolution
        if r and when != math.inf and when != -math.inf:
            return math.ceil(when / r) * r
        return when

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        return self.call_at(self.now() + max(0.0, delay), fn, *args)

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        self.now = trio.lowlevel.current_clock().current_time
        try:
            await self._run()
        finally:
            self.now = trio.current_time

    async def _run(self) -> None:
        heap = self._heap
        while True:
            now = self.now()
            self.in_batch = True
            try:
                while heap and heap[0][0] <= now:
                    _, _, t = heapq.heappop(heap)
                    if t.cancelled:
                        self._cancelled -= 1
                        continue
                    t.owner = None
                    try:
                        t.fn(*t.args)
                    except Exception:  # a bug in one callback must not stop the whole simulator
                        self.errors += 1
                        log.exception("simulator timer callback failed")
                t = None    # (nor here) what the last callback used is not kept while asleep
                io = self.io
                if io is not None:
                    io.poll()
                soon = self._soon
                while soon:
                    self._soon = []
                    for fn, args in soon:
                        try:
                            fn(*args)
                        except Exception:
                            self.errors += 1
                            log.exception("simulator callback failed")
                    soon = self._soon
                fn = args = None
            finally:
                self.in_batch = False
            if io is not None:
                io.flush()
            if self._soon:
                deadline = -math.inf
            else:
                deadline = self._grid(heap[0][0]) if heap else math.inf
            block = self.io_block
            if block and io is not None and deadline != -math.inf:
                # busy: wait in the io source's own epoll (no cancel scope, no trio fd
                # registration per turn), then one trio checkpoint for the other tasks. Idle
                # (nothing came and no timer was due): the trio wait below
                wait = min(deadline - self.now(), block)
                if wait <= 0 or io.wait(wait) or deadline - self.now() <= 0:
                    await trio.lowlevel.checkpoint()
                    continue
            with trio.CancelScope(deadline=deadline) as sc:
                self._scope = sc
                if io is not None:
                    await trio.lowlevel.wait_readable(io.fd)
                else:
                    await trio.sleep_forever()
            self._scope = None
