"""esl._steps: wake-ups held during a hot-path step run once, at the end of the outermost step."""

from __future__ import annotations

import pytest

from ccfast.esl._steps import STEPS, close_step, open_step


def test_releases_run_at_the_end_of_the_outermost_step_in_order():
    ran = []
    open_step()
    STEPS.held.append(lambda: ran.append("a"))
    open_step()
    STEPS.held.append(lambda: ran.append("b"))
    close_step()
    assert ran == [] and STEPS.depth == 1  # the inner end is part of the outer step
    close_step()
    assert ran == ["a", "b"] and STEPS.depth == 0 and STEPS.held == []


def test_a_release_runs_outside_any_step_and_a_failing_step_still_releases():
    depths = []
    with pytest.raises(ZeroDivisionError):
        open_step()
        try:
            STEPS.held.append(lambda: depths.append(STEPS.depth))
            1 / 0
        finally:
            close_step()
    assert depths == [0]  # what a release wakes, wakes at once


async def test_a_command_posted_in_a_step_wakes_the_link_writer_only_if_the_step_left_it_unwritten():
    import trio

    from ccfast.esl import _commands as C
    from ccfast.esl._link import _Link

    a, b = trio.socket.socketpair()
    link = _Link(trio.SocketStream(a), lambda event: None, {})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.writer)
        await trio.sleep(0.01)  # the writer waits
        wake = link._writer_wake
        open_step()
        try:
            link.post(C.Api("status"))
            assert not wake.is_set()  # held for the step's end
            link.flush_nowait()  # the step's closing flush wrote it
        finally:
            close_step()
        assert not wake.is_set() and not link._writer_armed
        open_step()
        try:
            link.post(C.Api("status"))
        finally:
            close_step()  # nothing flushed it: the release wakes the writer
        assert wake.is_set()
        with trio.fail_after(2):
            data = b""
            while data.count(b"api status\n\n") < 2:
                data += await b.recv(4096)
        nursery.cancel_scope.cancel()
    b.close()
