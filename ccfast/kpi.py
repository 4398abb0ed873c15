"""Per-queue contact-center KPIs over a sliding window and since start (pure, clock-injected).

Contract:
- Nothing here reads a clock or does I/O; every feeding call and every read takes ``now``
  (seconds, any epoch, monotone non-decreasing in practice; a call with an older ``now`` is
  counted in the since-start totals and in the window only if its bucket is still inside it).
- Memory is bounded: per queue, ``window // bucket`` fixed-size buckets plus one total record.
- Definitions (also in docs/metrics.md, the reference for operators):
    T          the queue's ``service_level_threshold`` (seconds, QueueParams, default 20)
    answered   members that reached an agent; ``wait`` = join (of this visit) → agent answered
    abandoned  members whose caller hung up while waiting (outcome ``abandoned``)
    ended      members that left the queue for any outcome (answered, abandoned, timeout,
               no_agent_timeout, exit_key, break_out)
    service_level               = answered with wait ≤ T / answered
    service_level_with_abandons = (answered with wait ≤ T + abandoned with wait ≤ T)
                                  / (answered + abandoned)
    asa (average speed of answer) = Σ wait of answered / answered
    aht (average handle time)     = Σ (talk + wrap-up) / calls ended after a bridge
    abandon_rate                  = abandoned / ended
    occupancy                     = busy agent-seconds / staffed agent-seconds, from the step
                                    function fed by ``agents(queue, staffed, busy, now)``
  A ratio or average with a zero denominator is ``None`` (no data), never 0.
"""

from __future__ import annotations

import json as _json
import math
from collections.abc import Iterable, Mapping

from .params import QueueParams

# -- member outcomes (label values of ccfast_queue_calls_total / ccfast_queue_wait_seconds) --
OUTCOME_ANSWERED = "answered"
OUTCOME_ABANDONED = "abandoned"  # caller hung up while waiting
OUTCOME_TIMEOUT = "timeout"  # max-wait-time reached
OUTCOME_NO_AGENT_TIMEOUT = "no_agent_timeout"  # max-wait-time-with-no-agent reached
OUTCOME_EXIT_KEY = "exit_key"  # caller pressed the queue's exit key
OUTCOME_BREAK_OUT = "break_out"  # left the queue otherwise (transfer, uuid_break, ...)
OUTCOMES = (
    OUTCOME_ANSWERED, OUTCOME_ABANDONED, OUTCOME_TIMEOUT, OUTCOME_NO_AGENT_TIMEOUT,
    OUTCOME_EXIT_KEY, OUTCOME_BREAK_OUT,
)
_OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOMES)}

DEFAULT_THRESHOLD = QueueParams(name="_").service_level_threshold
MAX_BUCKETS = 100_000  # per queue; refuses configurations that would not be "bounded" in practice

# Field layout of one bucket (a list of floats; lists are cheaper than objects here).
_ANS_SL = 6  # answered with wait <= T  (0..5 are the outcome counts, in OUTCOMES order)
_ABN_SL = 7  # abandoned with wait <= T
_ANS_WAIT = 8  # sum of answered waits
_HANDLED = 9  # calls ended after a bridge
_TALK = 10
_WRAP = 11
_BUSY = 12  # busy agent-seconds
_STAFFED = 13  # staffed agent-seconds
_NFIELDS = 14


class KpiError(ValueError):
    """Bad input to the KPI tracker (unknown outcome, negative duration, bad window)."""


def format_window(seconds: int) -> str:
    """A short label for a window length: 900 → '15m', 3600 → '1h', 45 → '45s'."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


class _QueueKpi:
    __slots__ = ("threshold", "slots", "tags", "total", "occ_t", "occ_staffed", "occ_busy")

    def __init__(self, nbuckets: int, threshold: int) -> None:
        self.threshold = threshold
        self.slots = [[0.0] * _NFIELDS for _ in range(nbuckets)]
        self.tags: list[int | None] = [None] * nbuckets
        self.total = [0.0] * _NFIELDS
        self.occ_t: float | None = None  # time of the last occupancy level change
        self.occ_staffed = 0
        self.occ_busy = 0


class KpiTracker:
    """Sliding-window and since-start KPI accumulators for every queue.

    ``window`` and ``bucket`` are seconds, ``window`` a multiple of ``bucket``. An event at time t
    lands in bucket ``floor(t / bucket)``; the window at ``now`` is the ``window // bucket``
    buckets ending with the one holding ``now`` (so it spans between ``window - bucket`` and
    ``window`` seconds of history).
    """

    def __init__(self, window: int = 900, bucket: int = 10) -> None:
        if not isinstance(window, int) or not isinstance(bucket, int) or window <= 0 or bucket <= 0:
            raise KpiError(f"window and bucket must be positive integers of seconds, got {window!r}/{bucket!r}")
        if window % bucket:
            raise KpiError(f"window {window} s is not a multiple of bucket {bucket} s")
        if window // bucket > MAX_BUCKETS:
            raise KpiError(f"window {window} s / bucket {bucket} s needs more than {MAX_BUCKETS} buckets")
        self.window = window
        self.bucket = bucket
        self.nbuckets = window // bucket
        self.window_label = format_window(window)
        self._queues: dict[str, _QueueKpi] = {}

    # -- configuration ---------------------------------------------------------------------
    def set_queue(self, params: QueueParams) -> None:
        """Add a queue or update its threshold from its params (accumulated data is kept)."""
        self.set_threshold(params.name, params.service_level_threshold)

    def set_threshold(self, queue: str, seconds: int) -> None:
        if seconds < 0:
            raise KpiError(f"queue {queue}: service level threshold must be >= 0, got {seconds}")
        self._queue(queue).threshold = seconds

    def remove_queue(self, queue: str) -> None:
        self._queues.pop(queue, None)

    def queues(self) -> list[str]:
        return sorted(self._queues)

    def _queue(self, queue: str) -> _QueueKpi:
        q = self._queues.get(queue)
        if q is None:
            q = self._queues[queue] = _QueueKpi(self.nbuckets, DEFAULT_THRESHOLD)
        return q

    def _slot(self, q: _QueueKpi, now: float) -> list[float] | None:
        """The window bucket for time ``now``, reset if it held an older bucket; None if stale."""
        idx = math.floor(now / self.bucket)
        pos = idx % self.nbuckets
        tag = q.tags[pos]
        if tag == idx:
            return q.slots[pos]
        if tag is not None and tag > idx:
            return None  # the slot already holds newer data: this event is older than the window
        q.tags[pos] = idx
        slot = q.slots[pos]
        for i in range(_NFIELDS):
            slot[i] = 0.0
        return slot

    def _add(self, q: _QueueKpi, now: float, pairs: Iterable[tuple[int, float]]) -> None:
        slot = self._slot(q, now)
        total = q.total
        for field, value in pairs:
            total[field] += value
            if slot is not None:
                slot[field] += value

    # -- feeding ---------------------------------------------------------------------------
    def member_ended(self, queue: str, outcome: str, wait: float, now: float) -> None:
        """A member left the queue (answered: reached an agent) after waiting ``wait`` seconds."""
        index = _OUTCOME_INDEX.get(outcome)
        if index is None:
            raise KpiError(f"unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
        if wait < 0:
            raise KpiError(f"queue {queue}: negative wait {wait}")
        q = self._queue(queue)
        pairs = [(index, 1.0)]
        if outcome == OUTCOME_ANSWERED:
            pairs.append((_ANS_WAIT, wait))
            if wait <= q.threshold:
                pairs.append((_ANS_SL, 1.0))
        elif outcome == OUTCOME_ABANDONED and wait <= q.threshold:
            pairs.append((_ABN_SL, 1.0))
        self._add(q, now, pairs)

    def answered(self, queue: str, wait: float, now: float) -> None:
        self.member_ended(queue, OUTCOME_ANSWERED, wait, now)

    def abandoned(self, queue: str, wait: float, now: float) -> None:
        self.member_ended(queue, OUTCOME_ABANDONED, wait, now)

    def call_ended(self, queue: str, talk: float, wrap: float, now: float) -> None:
        """A bridged call ended after ``talk`` seconds; the agent then wraps up ``wrap`` seconds."""
        if talk < 0 or wrap < 0:
            raise KpiError(f"queue {queue}: negative talk/wrap-up time {talk}/{wrap}")
        self._add(self._queue(queue), now, ((_HANDLED, 1.0), (_TALK, talk), (_WRAP, wrap)))

    def agents(self, queue: str, staffed: int, busy: int, now: float) -> None:
        """The queue's agent levels from ``now`` on: ``staffed`` logged in and not on break (or
        busy), ``busy`` of them handling or wrapping up a call. Occupancy integrates these."""
        if staffed < 0 or busy < 0:
            raise KpiError(f"queue {queue}: negative agent counts {staffed}/{busy}")
        q = self._queue(queue)
        self._integrate(q, now)
        q.occ_staffed = staffed
        q.occ_busy = busy

    def _integrate(self, q: _QueueKpi, now: float) -> None:
        """Add the current levels × elapsed time since the last change, split over buckets."""
        start = q.occ_t
        if start is None or now <= start:
            if start is None:
                q.occ_t = now
            return
        q.occ_t = now
        staffed, busy = q.occ_staffed, q.occ_busy
        if not staffed and not busy:
            return
        q.total[_STAFFED] += staffed * (now - start)
        q.total[_BUSY] += busy * (now - start)
        width = self.bucket
        # only the part inside the window matters for the buckets
        start = max(start, (math.floor(now / width) - self.nbuckets + 1) * width)
        t = start
        while t < now:
            edge = min((math.floor(t / width) + 1) * width, now)
            slot = self._slot(q, t)
            if slot is not None:
                slot[_STAFFED] += staffed * (edge - t)
                slot[_BUSY] += busy * (edge - t)
            t = edge

    # -- reading ---------------------------------------------------------------------------
    def _window_sum(self, q: _QueueKpi, now: float) -> list[float]:
        cur = math.floor(now / self.bucket)
        low = cur - self.nbuckets
        acc = [0.0] * _NFIELDS
        for tag, slot in zip(q.tags, q.slots):
            if tag is not None and low < tag <= cur:
                for i in range(_NFIELDS):
                    acc[i] += slot[i]
        return acc

    def stats(
        self,
        now: float,
        queue: str | None = None,
        longest_wait: Mapping[str, float] | None = None,
    ) -> dict[str, dict]:
        """KPIs of every queue (or one): ``{queue: {"threshold_s", "longest_wait_s",
        "window": {...}, "since_start": {...}}}``. Advances the occupancy integral to ``now``.

        ``longest_wait`` maps queue → seconds the longest-waiting member has waited now (from the
        service's state snapshot); queues absent from it get ``None``.
        """
        if queue is not None and queue not in self._queues:
            raise KpiError(f"queue {queue!r} not found")
        names = [queue] if queue is not None else sorted(self._queues)
        out: dict[str, dict] = {}
        for name in names:
            q = self._queues[name]
            self._integrate(q, now)
            wait = longest_wait.get(name) if longest_wait is not None else None
            out[name] = {
                "queue": name,
                "threshold_s": q.threshold,
                "longest_wait_s": wait,
                "window": dict(_summary(self._window_sum(q, now)), seconds=self.window, label=self.window_label),
                "since_start": _summary(q.total),
            }
        return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _summary(f: list[float]) -> dict:
    answered = f[_OUTCOME_INDEX[OUTCOME_ANSWERED]]
    abandoned = f[_OUTCOME_INDEX[OUTCOME_ABANDONED]]
    ended = sum(f[i] for i in range(len(OUTCOMES)))
    handled = f[_HANDLED]
    summary: dict = {name: int(f[i]) for i, name in enumerate(OUTCOMES)}
    summary.update(
        ended=int(ended),
        answered_within_threshold=int(f[_ANS_SL]),
        abandoned_within_threshold=int(f[_ABN_SL]),
        handled=int(handled),
        service_level=_ratio(f[_ANS_SL], answered),
        service_level_with_abandons=_ratio(f[_ANS_SL] + f[_ABN_SL], answered + abandoned),
        asa_s=_ratio(f[_ANS_WAIT], answered),
        aht_s=_ratio(f[_TALK] + f[_WRAP], handled),
        abandon_rate=_ratio(abandoned, ended),
        occupancy=_ratio(f[_BUSY], f[_STAFFED]),
    )
    return summary


# -- `ccfast ctl stats [queue] [--json]` ------------------------------------------------------
_ROWS: tuple[tuple[str, str, str], ...] = (
    # (key, label, kind)
    ("ended", "members ended", "int"),
    ("answered", "answered", "int"),
    ("abandoned", "abandoned", "int"),
    ("timeout", "timeout", "int"),
    ("no_agent_timeout", "no-agent timeout", "int"),
    ("exit_key", "exit key", "int"),
    ("break_out", "break out", "int"),
    ("service_level", "service level", "pct"),
    ("service_level_with_abandons", "SL incl. abandons", "pct"),
    ("asa_s", "avg speed of answer", "sec"),
    ("aht_s", "avg handle time", "sec"),
    ("abandon_rate", "abandon rate", "pct"),
    ("occupancy", "occupancy", "pct"),
)


def _cell(value, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "sec":
        return f"{value:.1f} s"
    return str(value)


def format_stats(stats: Mapping[str, dict], as_json: bool = False) -> str:
    """Render ``KpiTracker.stats()`` output for ``ccfast ctl stats`` (text table or JSON)."""
    if as_json:
        return _json.dumps({"queues": list(stats.values())}, indent=2, sort_keys=True)
    if not stats:
        return "no queues"
    blocks = []
    for name, s in stats.items():
        win = s["window"]
        head = f"last {win['label']}"
        lines = [
            f"queue {name}  (service level threshold {s['threshold_s']} s)",
            f"  {'':<22}{head:>12}{'since start':>14}",
        ]
        for key, label, kind in _ROWS:
            lines.append(f"  {label:<22}{_cell(win[key], kind):>12}{_cell(s['since_start'][key], kind):>14}")
        wait = s["longest_wait_s"]
        lines.append(f"  {'longest wait now':<22}{_cell(wait, 'sec'):>12}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def thresholds_from(params: Iterable[QueueParams]) -> dict[str, int]:
    """queue name → service level threshold, for a set of queue params."""
    return {p.name: p.service_level_threshold for p in params}


__all__ = [
    "KpiTracker", "KpiError", "format_stats", "format_window", "thresholds_from", "OUTCOMES",
    "OUTCOME_ANSWERED", "OUTCOME_ABANDONED", "OUTCOME_TIMEOUT", "OUTCOME_NO_AGENT_TIMEOUT",
    "OUTCOME_EXIT_KEY", "OUTCOME_BREAK_OUT",
]
