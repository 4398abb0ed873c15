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
