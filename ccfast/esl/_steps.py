"""Wake-ups held while one synchronous step of the hot path runs.

A hub tick, one read of a box link, one run of due timers: each is a synchronous step that ends
by writing every link's queued commands and running a due dispatch pass (``Service.push``).
Waking a link's writer task or the dispatcher's task for what such a step queued or changed
would cost each of them a scheduler turn (and the loop an extra ``epoll_wait``) only to find
nothing left to do. So inside a step a wake-up is *held*: the waker registers a release
function, and when the outermost step ends every release runs once and wakes its task only if
there is still work (bytes the closing flush did not write, a change no pass has seen).

Contract: ``open_step()`` … ``close_step()`` bracket synchronous code only (never an ``await``
inside), with ``close_step`` in a ``finally`` so that a failing step still releases. A release
must not raise. Outside any step, wakers wake at once.
"""

from __future__ import annotations

from typing import Callable


class _Steps:
    __slots__ = ("depth", "held")

    def __init__(self) -> None:
        self.depth = 0  # open steps (nested opens are part of the outermost one)
        self.held: list[Callable[[], None]] = []


STEPS = _Steps()


def open_step() -> None:
    STEPS.depth += 1


def close_step() -> None:
    """End a step; at the end of the outermost one, run the held releases (in order)."""
    steps = STEPS
    steps.depth -= 1
    if steps.depth == 0 and steps.held:
        held, steps.held = steps.held, []
        for release in held:  # depth is 0 now: whatever they wake, wakes at once
            release()
