"""FailureLog: one traceback, then counted summaries at most once per interval per key."""

from __future__ import annotations

import logging

from ccfast.esl._throttle import FailureLog


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def boom(i: int) -> Exception:
    try:
        raise ConnectionError(f"lost {i}")
    except ConnectionError as exc:
        return exc


def test_a_storm_of_failures_logs_a_few_lines(caplog):
    clock = Clock()
    flog = FailureLog(logging.getLogger("t.throttle"), interval=1.0, traceback_every=60.0, clock=clock)
    with caplog.at_level(logging.ERROR, logger="t.throttle"):
        for i in range(10_000):
            clock.t = i * 0.0003  # 10,000 failures in 3 s
            flog.failed("task OfferTask.run", boom(i))
        flog.failed("task MemberSession.run", boom(-1))
        flog.flush()
    records = caplog.records
    assert flog.total == 10_001
    assert len(records) <= 6
    with_tb = [r for r in records if r.exc_info]
    assert [r.getMessage() for r in with_tb] == ["task OfferTask.run failed", "task MemberSession.run failed"]
    counted = sum(int(r.getMessage().split(" failed ")[1].split()[0]) for r in records if not r.exc_info)
    assert counted == 9_999  # every suppressed failure is in some summary line
    assert "lost 9999" in records[-1].getMessage() or any("lost 9999" in r.getMessage() for r in records)


def test_traceback_again_after_the_quiet_period(caplog):
    clock = Clock()
    flog = FailureLog(logging.getLogger("t.throttle2"), interval=1.0, traceback_every=60.0, clock=clock)
    with caplog.at_level(logging.ERROR, logger="t.throttle2"):
        flog.failed("x", boom(1))
        clock.t = 61.0
        flog.failed("x", boom(2))
    assert [bool(r.exc_info) for r in caplog.records] == [True, True]


def test_fifo_keeps_order_across_compaction():
    from ccfast.esl._link import _Fifo

    q, expect = _Fifo(), []
    n = 0
    for round_ in range(50):
        for _ in range(round_ * 7 % 150):
            q.append(n)
            expect.append(n)
            n += 1
        for _ in range(round_ * 5 % 130):
            if expect:
                assert q.popleft() == expect.pop(0)
        assert len(q) == len(expect) and bool(q) == bool(expect)
    while expect:
        assert q.popleft() == expect.pop(0)
    import pytest

    with pytest.raises(IndexError):
        q.popleft()
