"""KPI math on hand-computed examples, window expiry, occupancy integration, formatting."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccfast.kpi import OUTCOMES, KpiError, KpiTracker, format_stats, format_window
from ccfast.params import QueueParams, build_queue_params


def feed_example(k: KpiTracker) -> None:
    # queue q, threshold 20 s, window 60 s in 10 s buckets
    k.answered("q", 10, 1000)  # within T
    k.answered("q", 30, 1005)  # not within T
    k.abandoned("q", 5, 1010)  # abandoned within T
    k.answered("q", 15, 1012)  # within T
    k.abandoned("q", 40, 1020)  # abandoned after T
    k.member_ended("q", "timeout", 60, 1030)
    k.call_ended("q", 100, 20, 1030)
    k.call_ended("q", 200, 0, 1040)


def test_hand_computed_window_and_totals():
    k = KpiTracker(window=60, bucket=10)
    k.set_threshold("q", 20)
    feed_example(k)
    s = k.stats(1040)["q"]
    for part in (s["window"], s["since_start"]):
        assert part["answered"] == 3 and part["abandoned"] == 2 and part["timeout"] == 1
        assert part["ended"] == 6
        assert part["answered_within_threshold"] == 2
        assert part["abandoned_within_threshold"] == 1
        assert part["service_level"] == pytest.approx(2 / 3)
        assert part["service_level_with_abandons"] == pytest.approx((2 + 1) / (3 + 2))
        assert part["asa_s"] == pytest.approx((10 + 30 + 15) / 3)
        assert part["aht_s"] == pytest.approx((100 + 20 + 200 + 0) / 2)
        assert part["abandon_rate"] == pytest.approx(2 / 6)
        assert part["occupancy"] is None  # never fed agent levels
    assert s["window"]["seconds"] == 60 and s["window"]["label"] == "1m"
    assert s["threshold_s"] == 20


def test_window_expiry_drops_old_buckets_but_not_totals():
    k = KpiTracker(window=60, bucket=10)
    feed_example(k)
    # at 1065 the window holds buckets 101..106, i.e. events at t >= 1010
    s = k.stats(1065)["q"]
    w = s["window"]
    assert (w["answered"], w["abandoned"], w["timeout"]) == (1, 2, 1)
    assert w["service_level"] == 1.0
    assert w["service_level_with_abandons"] == pytest.approx(2 / 3)
    assert w["asa_s"] == 15
    assert w["abandon_rate"] == pytest.approx(2 / 4)
    assert s["since_start"]["answered"] == 3
    assert s["since_start"]["service_level"] == pytest.approx(2 / 3)
    # long after: the window is empty, ratios are "no data", totals remain
    later = k.stats(5000)["q"]
    assert later["window"]["ended"] == 0
    assert later["window"]["service_level"] is None and later["window"]["asa_s"] is None
    assert later["window"]["aht_s"] is None and later["window"]["abandon_rate"] is None
    assert later["since_start"]["ended"] == 6


def test_threshold_boundary_is_inclusive_and_per_queue():
    k = KpiTracker()
    k.set_queue(QueueParams(name="fast", service_level_threshold=5))
    k.answered("fast", 5, 100)  # exactly T: within
    k.answered("fast", 6, 100)
    k.answered("slow", 20, 100)  # default threshold 20
    s = k.stats(100)
    assert s["fast"]["window"]["service_level"] == 0.5
    assert s["slow"]["window"]["service_level"] == 1.0
    assert s["slow"]["threshold_s"] == 20


def test_threshold_param_parsed_from_config_name():
    params, warnings = build_queue_params("q", {"service-level-threshold": "30"})
    assert not warnings and params.service_level_threshold == 30
    k = KpiTracker()
    k.set_queue(params)
    k.answered("q", 25, 0)
    assert k.stats(0)["q"]["window"]["service_level"] == 1.0


def test_occupancy_integrates_step_function_over_window():
    k = KpiTracker(window=60, bucket=10)
    k.agents("q", staffed=4, busy=2, now=1000)
    k.agents("q", staffed=4, busy=4, now=1030)
    s = k.stats(1060)["q"]
    # since start: staffed 4*60 = 240 agent-s, busy 2*30 + 4*30 = 180
    assert s["since_start"]["occupancy"] == pytest.approx(180 / 240)
    # window at 1060 starts at 1010: staffed 4*50 = 200, busy 2*20 + 4*30 = 160
    assert s["window"]["occupancy"] == pytest.approx(160 / 200)
    # reading twice at the same time does not double count
    assert k.stats(1060)["q"]["since_start"]["occupancy"] == pytest.approx(180 / 240)


def test_occupancy_long_gap_is_clipped_to_window():
    k = KpiTracker(window=60, bucket=10)
    k.agents("q", 2, 1, 0)
    s = k.stats(10_000)["q"]
    assert s["since_start"]["occupancy"] == pytest.approx(0.5)
    assert s["window"]["occupancy"] == pytest.approx(0.5)


def test_late_event_counts_in_totals_only():
    k = KpiTracker(window=60, bucket=10)
    k.answered("q", 1, 2000)
    k.answered("q", 50, 1000)  # from before the window: bucket slot holds newer data
    s = k.stats(2000)["q"]
    assert s["window"]["answered"] == 1 and s["window"]["asa_s"] == 1
    assert s["since_start"]["answered"] == 2


def test_bad_input_is_refused_with_specific_errors():
    with pytest.raises(KpiError, match="not a multiple"):
        KpiTracker(window=65, bucket=10)
    with pytest.raises(KpiError, match="positive"):
        KpiTracker(window=0)
    k = KpiTracker()
    with pytest.raises(KpiError, match="unknown outcome 'hangup'"):
        k.member_ended("q", "hangup", 1, 0)
    with pytest.raises(KpiError, match="negative wait"):
        k.answered("q", -1, 0)
    with pytest.raises(KpiError, match="negative talk"):
        k.call_ended("q", -5, 0, 0)
    with pytest.raises(KpiError, match="not found"):
        k.stats(0, "nope")


def test_memory_is_bounded_by_bucket_count():
    k = KpiTracker(window=60, bucket=10)
    for t in range(0, 100_000, 7):
        k.answered("q", 3, t)
    q = k._queues["q"]
    assert len(q.slots) == 6 and len(q.tags) == 6
    assert k.stats(100_000)["q"]["since_start"]["answered"] == len(range(0, 100_000, 7))


def test_longest_wait_comes_from_provider_and_formatting():
    k = KpiTracker(window=900, bucket=10)
    feed_example(k)
    stats = k.stats(1040, longest_wait={"q": 42.0})
    assert stats["q"]["longest_wait_s"] == 42.0
    text = format_stats(stats)
    assert "queue q" in text and "last 15m" in text and "since start" in text
    assert "66.7%" in text  # service level 2/3
    assert "18.3 s" in text  # ASA 55/3
    assert "42.0 s" in text
    data = json.loads(format_stats(stats, as_json=True))
    assert data["queues"][0]["window"]["answered"] == 3
    assert data["queues"][0]["window"]["occupancy"] is None
    assert format_stats({}) == "no queues"
    assert format_window(3600) == "1h" and format_window(45) == "45s"


events = st.lists(
    st.tuples(st.integers(0, 400), st.sampled_from(OUTCOMES), st.integers(0, 60)), max_size=60
)


@settings(max_examples=60, deadline=None)
@given(events=events, now_extra=st.integers(0, 200))
def test_window_matches_brute_force(events, now_extra):
    events = sorted(events, key=lambda e: e[0])
    k = KpiTracker(window=60, bucket=10)
    for t, outcome, wait in events:
        k.member_ended("q", outcome, wait, t)
    now = (events[-1][0] if events else 0) + now_extra
    got = k.stats(now)["q"]["window"] if events else None
    if not events:
        return
    cur = math.floor(now / 10)
    inside = [e for e in events if cur - 6 < e[0] // 10 <= cur]
    for name in OUTCOMES:
        assert got[name] == sum(1 for e in inside if e[1] == name)
    answered = [e for e in inside if e[1] == "answered"]
    assert got["answered_within_threshold"] == sum(1 for e in answered if e[2] <= 20)
    if answered:
        assert got["asa_s"] == pytest.approx(sum(e[2] for e in answered) / len(answered))
    else:
        assert got["asa_s"] is None
