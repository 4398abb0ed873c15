"""The metrics facade, the spec table, the scrape-time snapshot and event derivation (no network)."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccfast import strings as S
from ccfast.kpi import KpiTracker
from ccfast.metrics import (
    OUTCOMES, PREFIX, RESULTS, SL_THRESHOLDS, SPECS, Metrics, MetricsError, StateSnapshot,
    offer_result_for_cause, outcome_for_cancel, snapshot_from_rows,
)
from ccfast.params import QueueParams


def samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(smp: dict, name: str, **labels) -> float:
    return smp[(name, tuple(sorted(labels.items())))]


def test_names_follow_prometheus_conventions():
    for spec in SPECS:
        assert spec.name.startswith(PREFIX) and PREFIX not in spec.name[len(PREFIX):]
        assert spec.name == spec.name.lower()
        assert not spec.name.endswith("_total"), "prometheus-client adds _total to counters"
        if spec.kind == "histogram":
            assert spec.name.endswith("_seconds"), spec.name
        for banned in ("member", "caller", "uuid", "cid"):
            assert banned not in spec.labels, (spec.name, banned)
        if "agent" in spec.labels:
            assert spec.per_agent, f"{spec.name}: per-agent labels only behind the option"
        assert not any(u in spec.name for u in ("_ms", "millis", "minutes")), spec.name


def test_registry_exposes_exactly_the_spec_table():
    m = Metrics(per_agent=True, process_metrics=False, clock=lambda: 0)
    names = {fam.name for fam in m.registry.collect()}
    for spec in SPECS:
        assert spec.name in names, spec.name
    # every family the registry has is in the table
    assert names <= {s.name for s in SPECS}
    m2 = Metrics(per_agent=False, process_metrics=False)
    names2 = {fam.name for fam in m2.registry.collect()}
    assert PREFIX + "agent_offers_by_agent" not in names2 and PREFIX + "agent_state" not in names2


def test_wait_buckets_include_service_level_thresholds():
    spec = next(s for s in SPECS if s.name == PREFIX + "queue_wait_seconds")
    assert set(SL_THRESHOLDS) <= set(spec.buckets)
    assert SL_THRESHOLDS == (5, 10, 15, 20, 30, 45, 60, 120, 300)
    dispatch = next(s for s in SPECS if s.name == PREFIX + "dispatch_latency_seconds")
    assert min(dispatch.buckets) < 0.001  # sub-millisecond resolution


def test_cause_and_reason_mapping():
    assert offer_result_for_cause(S.HANGUP_NO_ANSWER) == "no_answer"
    assert offer_result_for_cause(S.HANGUP_ALLOTTED_TIMEOUT) == "no_answer"
    assert offer_result_for_cause(S.HANGUP_USER_BUSY) == "busy"
    assert offer_result_for_cause(S.HANGUP_NORMAL_CIRCUIT_CONGESTION) == "busy"
    assert offer_result_for_cause(S.HANGUP_CALL_REJECTED) == "reject"
    assert offer_result_for_cause(S.HANGUP_USER_NOT_REGISTERED) == "failed"
    assert offer_result_for_cause("UNALLOCATED_NUMBER") == "failed"
    assert offer_result_for_cause(S.HANGUP_LOSE_RACE) == "cancelled"
    assert outcome_for_cancel(S.CANCEL_TIMEOUT, False) == "timeout"
    assert outcome_for_cancel(S.CANCEL_NO_AGENT_TIMEOUT, True) == "no_agent_timeout"
    assert outcome_for_cancel(S.CANCEL_EXIT_WITH_KEY, False) == "exit_key"
    assert outcome_for_cancel(S.CANCEL_BREAK_OUT, True) == "abandoned"
    assert outcome_for_cancel(S.CANCEL_BREAK_OUT, False) == "break_out"


def test_facade_counts_and_histograms():
    m = Metrics(process_metrics=False, clock=lambda: 100)
    m.member_ended("q", "answered", 4, 100)
    m.member_ended("q", "answered", 21, 100)
    m.member_ended("q", "abandoned", 30, 100)
    m.offer_result("q", "no_answer")
    m.offer_failed("q", S.HANGUP_CALL_REJECTED)
    m.call_ended("q", 90, 15, 100)
    m.esl_event("fs1", 3)
    m.esl_reconnect("fs1")
    m.esl_overflow("fs1", 7)
    m.esl_command("fs1", "originate", 0.02)
    m.dispatch_latency(0.0003, "member")
    m.core_decision(0.00001, "dispatch")
    m.store_batch(0.004, 12, "sqlite")
    m.dispatched(99.5)
    smp = samples(m.text())
    assert value(smp, PREFIX + "queue_calls_total", queue="q", outcome="answered") == 2
    assert value(smp, PREFIX + "queue_calls_total", queue="q", outcome="abandoned") == 1
    assert value(smp, PREFIX + "queue_wait_seconds_bucket", queue="q", outcome="answered", le="20.0") == 1
    assert value(smp, PREFIX + "queue_wait_seconds_bucket", queue="q", outcome="answered", le="25.0") == 2
    assert value(smp, PREFIX + "queue_wait_seconds_sum", queue="q", outcome="answered") == 25
    assert value(smp, PREFIX + "agent_offers_total", queue="q", result="reject") == 1
    assert value(smp, PREFIX + "talk_time_seconds_sum", queue="q") == 90
    assert value(smp, PREFIX + "wrap_up_seconds_sum", queue="q") == 15
    assert value(smp, PREFIX + "esl_events_received_total", box="fs1") == 3
    assert value(smp, PREFIX + "esl_reconnects_total", box="fs1") == 1
    assert value(smp, PREFIX + "esl_overflow_drops_total", box="fs1") == 7
    assert value(smp, PREFIX + "esl_command_seconds_count", box="fs1", command="originate") == 1
    assert value(smp, PREFIX + "dispatch_latency_seconds_bucket", trigger="member", le="0.0005") == 1
    assert value(smp, PREFIX + "dispatch_latency_seconds_bucket", trigger="member", le="0.00025") == 0
    assert value(smp, PREFIX + "core_decision_seconds_count", op="dispatch") == 1
    assert value(smp, PREFIX + "store_rows_written_total", backend="sqlite") == 12
    assert value(smp, PREFIX + "last_dispatch_timestamp_seconds") == 99.5
    assert not any(name.endswith("_created") for name, _ in smp)


def test_facade_refuses_unknown_vocabulary():
    m = Metrics(process_metrics=False)
    with pytest.raises(MetricsError, match="unknown outcome 'gone'"):
        m.member_ended("q", "gone", 1, 0)
    with pytest.raises(MetricsError, match="unknown offer result"):
        m.offer_result("q", "maybe")
    with pytest.raises(MetricsError, match="unknown dispatch trigger"):
        m.dispatch_latency(0.1, "tier")
    with pytest.raises(MetricsError, match="not enabled"):
        m.kpi_stats(0)


def test_set_queue_creates_zero_series_and_forget_queue_removes_them():
    m = Metrics(kpi=KpiTracker(), process_metrics=False, clock=lambda: 0)
    m.set_queue(QueueParams(name="q", service_level_threshold=30))
    m.set_queue(QueueParams(name="other"))
    smp = samples(m.text())
    for outcome in OUTCOMES:
        assert value(smp, PREFIX + "queue_calls_total", queue="q", outcome=outcome) == 0
    for result in RESULTS:
        assert value(smp, PREFIX + "agent_offers_total", queue="q", result=result) == 0
    assert value(smp, PREFIX + "queue_service_level_threshold_seconds", queue="q") == 30
    m.member_ended("q", "answered", 1, 0)
    m.forget_queue("q")
    smp = samples(m.text())
    assert not any(dict(labels).get("queue") == "q" for _, labels in smp)
    assert value(smp, PREFIX + "queue_calls_total", queue="other", outcome="answered") == 0
    m.member_ended("q", "answered", 1, 0)  # a re-loaded queue counts again from 0
    assert value(samples(m.text()), PREFIX + "queue_calls_total", queue="q", outcome="answered") == 1


def test_per_agent_labels_only_with_option():
    off = Metrics(process_metrics=False)
    off.offer_result("q", "answered", agent="1000@default")
    off.set_snapshot_provider(lambda now: StateSnapshot(agent_detail={"1000@default": ("Available", "Waiting")}))
    assert not any("agent" in dict(labels) for _, labels in samples(off.text()))
    on = Metrics(process_metrics=False, per_agent=True)
    on.offer_result("q", "answered", agent="1000@default")
    on.set_snapshot_provider(lambda now: StateSnapshot(agent_detail={"1000@default": ("Available", "Waiting")}))
    smp = samples(on.text())
    assert value(smp, PREFIX + "agent_offers_by_agent_total", agent="1000@default", result="answered") == 1
    assert value(smp, PREFIX + "agent_state", agent="1000@default", status="Available", state="Waiting") == 1


def _agent(name, status, state, **kw):
    row = {"name": name, "status": status, "state": state, "wrap_up_time": 0, "last_bridge_end": 0,
           "ready_time": 0, "external_calls_count": 0}
    row.update(kw)
    return row


def test_snapshot_from_rows_counts_state():
    now = 1000
    queues = [QueueParams(name="q1"), QueueParams(name="q2", skip_agents_with_external_calls=False)]
    agents = [
        _agent("a1", S.STATUS_AVAILABLE, S.STATE_WAITING),  # available in q1 and q2
        _agent("a2", S.STATUS_AVAILABLE, S.STATE_IN_A_QUEUE_CALL),  # busy
        _agent("a3", S.STATUS_AVAILABLE, S.STATE_WAITING, wrap_up_time=30, last_bridge_end=990),  # wrap-up
        _agent("a4", S.STATUS_ON_BREAK, S.STATE_WAITING),  # not staffed
        _agent("a5", S.STATUS_AVAILABLE, S.STATE_WAITING, external_calls_count=1),  # q1 skips it
        _agent("a6", S.STATUS_AVAILABLE, S.STATE_WAITING, ready_time=1005),  # delayed
        _agent("a7", "available", S.STATE_WAITING),  # lowercase status: invisible to dispatch (quirk)
    ]
    tiers = [{"queue": "q1", "agent": a, "state": S.TIER_READY} for a in ("a1", "a2", "a3", "a4", "a5", "a6", "a7")]
    tiers += [{"queue": "q2", "agent": a, "state": S.TIER_READY} for a in ("a1", "a5")]
    tiers += [{"queue": "q2", "agent": "a2", "state": S.TIER_STANDBY}]
    members = [
        {"queue": "q1", "state": S.MEMBER_WAITING, "joined_epoch": 940, "rejoined_epoch": 0},
        {"queue": "q1", "state": S.MEMBER_TRYING, "joined_epoch": 900, "rejoined_epoch": 980},  # resumed: 20 s
        {"queue": "q1", "state": S.MEMBER_ANSWERED, "joined_epoch": 100, "rejoined_epoch": 0},  # not waiting
        {"queue": "q1", "state": S.MEMBER_ABANDONED, "joined_epoch": 100, "rejoined_epoch": 0},
    ]
    snap = snapshot_from_rows(now, queues, agents, tiers, members, {"fs1": True}, journal_backlog=4)
    assert snap.members[("q1", S.MEMBER_WAITING)] == 1 and snap.members[("q1", S.MEMBER_TRYING)] == 1
    assert snap.members[("q2", S.MEMBER_WAITING)] == 0
    assert snap.oldest_wait == {"q1": 60, "q2": 0.0}
    assert snap.available_agents == {"q1": 1, "q2": 2}
    assert snap.agents[(S.STATUS_AVAILABLE, S.STATE_WAITING)] == 4
    assert snap.queue_agents[("q2", S.STATUS_AVAILABLE, S.STATE_IN_A_QUEUE_CALL)] == 1
    # staffed: a1 a2 a3 a5 a6 a7 (a4 on break); busy: a2 (call) a3 (wrap-up)
    assert snap.queue_staffed["q1"] == 6 and snap.queue_busy["q1"] == 2
    assert snap.journal_backlog == 4 and snap.esl_links == {"fs1": True}


def test_scrape_gauges_come_from_provider_and_feed_occupancy():
    clock = [1000.0]
    kpi = KpiTracker(window=60, bucket=10)
    m = Metrics(kpi=kpi, process_metrics=False, clock=lambda: clock[0])
    m.set_queue(QueueParams(name="q"))
    calls = []

    def provider(now):
        calls.append(now)
        return StateSnapshot(
            members={("q", "Waiting"): 3}, oldest_wait={"q": 17.5}, available_agents={"q": 2},
            agents={("Available", "Waiting"): 2}, queue_agents={("q", "Available", "Waiting"): 2},
            queue_staffed={"q": 4}, queue_busy={"q": 1}, esl_links={"fs1": True, "fs2": False},
            journal_backlog=9,
        )

    m.set_snapshot_provider(provider)
    smp = samples(m.text())
    assert calls == [1000.0]  # once per scrape
    assert value(smp, PREFIX + "queue_members", queue="q", state="Waiting") == 3
    assert value(smp, PREFIX + "queue_oldest_wait_seconds", queue="q") == 17.5
    assert value(smp, PREFIX + "queue_available_agents", queue="q") == 2
    assert value(smp, PREFIX + "esl_link_up", box="fs2") == 0
    assert value(smp, PREFIX + "store_journal_backlog") == 9
    assert value(smp, PREFIX + "agents", status="Available", state="Waiting") == 2
    clock[0] = 1040.0
    smp = samples(m.text())
    assert value(smp, PREFIX + "queue_occupancy_ratio", queue="q", window="1m") == pytest.approx(0.25)
    stats = m.kpi_stats(1040.0, "q")
    assert stats["q"]["longest_wait_s"] == 17.5


def _ev(action, **headers):
    return action, {k.replace("_", "-"): str(v) for k, v in headers.items()}


def test_observe_events_derives_outcomes_without_double_counting():
    m = Metrics(kpi=KpiTracker(), process_metrics=False, clock=lambda: 1100)
    m.set_wrap_up_lookup(lambda agent: 10 if agent == "a1" else 0)
    q = "support"
    evs = [
        _ev(S.ACTION_MEMBER_QUEUE_START, CC_Queue=q, CC_Member_UUID="m1"),
        _ev(S.ACTION_MEMBER_QUEUE_START, CC_Queue=q, CC_Member_UUID="m2"),
        _ev(S.ACTION_MEMBER_QUEUE_RESUME, CC_Queue=q, CC_Member_UUID="m3"),
        _ev(S.ACTION_BRIDGE_AGENT_START, CC_Queue=q, CC_Agent="a1", CC_Member_UUID="m1",
            CC_Agent_Answered_Time=1008, CC_Member_Joined_Time=1000),
        _ev(S.ACTION_BRIDGE_AGENT_FAIL, CC_Queue=q, CC_Agent="a2", CC_Member_UUID="m2", CC_Hangup_Cause="LOSE_RACE"),
        # m2: answered, then the bridge failed (member gone): one outcome only
        _ev(S.ACTION_BRIDGE_AGENT_START, CC_Queue=q, CC_Agent="a3", CC_Member_UUID="m2",
            CC_Agent_Answered_Time=1030, CC_Member_Joined_Time=1000),
        _ev(S.ACTION_MEMBER_QUEUE_END, CC_Queue=q, CC_Member_UUID="m2", CC_Cause="Cancel", CC_Cancel_Reason="NONE",
            CC_Member_Leaving_Time=1031, CC_Member_Joined_Time=1000),
        _ev(S.ACTION_MEMBER_QUEUE_END, CC_Queue=q, CC_Member_UUID="m3", CC_Cause="Cancel", CC_Cancel_Reason="BREAK_OUT",
            CC_Member_Leaving_Time=1012, CC_Member_Joined_Time=1000),
        _ev(S.ACTION_MEMBER_QUEUE_END, CC_Queue=q, CC_Member_UUID="m1", CC_Cause="Terminated", CC_Agent="a1",
            CC_Agent_Answered_Time=1008, CC_Member_Leaving_Time=1108, CC_Member_Joined_Time=1000),
        _ev(S.ACTION_MEMBERS_COUNT, CC_Queue=q, CC_Count=0),
    ]
    m.member_hung_up("m3")
    m.observe_events(evs, 1100)
    smp = samples(m.text())
    calls = {o: smp.get((PREFIX + "queue_calls_total", (("outcome", o), ("queue", q))), 0) for o in OUTCOMES}
    assert calls == {"answered": 2, "abandoned": 1, "timeout": 0, "no_agent_timeout": 0, "exit_key": 0, "break_out": 0}
    assert value(smp, PREFIX + "queue_wait_seconds_sum", queue=q, outcome="answered") == 8 + 30
    assert value(smp, PREFIX + "queue_wait_seconds_sum", queue=q, outcome="abandoned") == 12
    assert value(smp, PREFIX + "agent_offers_total", queue=q, result="answered") == 2
    assert value(smp, PREFIX + "agent_offers_total", queue=q, result="cancelled") == 1
    assert value(smp, PREFIX + "talk_time_seconds_sum", queue=q) == 100
    assert value(smp, PREFIX + "wrap_up_seconds_sum", queue=q) == 10
    assert value(smp, PREFIX + "queue_joins_total", queue=q, kind="start") == 2
    assert value(smp, PREFIX + "queue_joins_total", queue=q, kind="resume") == 1
    assert value(smp, PREFIX + "events_fired_total", action=S.ACTION_MEMBER_QUEUE_END) == 3
    assert value(smp, PREFIX + "events_fired_total", action=S.ACTION_MEMBERS_COUNT) == 1
    assert m._answered == {} and m._hung_up == {}  # bookkeeping released at the end events
    k = m.kpi_stats(1100)[q]["window"]
    assert k["answered"] == 2 and k["abandoned"] == 1 and k["aht_s"] == 110


def test_docs_describe_every_metric():
    import pathlib

    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    for spec in SPECS:
        shown = spec.name + "_total" if spec.kind == "counter" else spec.name
        assert f"`{shown}`" in text, shown


def test_hot_path_updates_are_folded_when_read_and_bounded_between_reads():
    from ccfast import metrics as metrics_mod

    m = Metrics(process_metrics=False)
    for _ in range(3):
        m.offer_result("q", "answered")
        m.dispatch_latency(0.002, "member")
    assert m._pend_inc and m._pend_obs  # nothing reached prometheus yet
    smp = samples(m.text())
    assert value(smp, PREFIX + "agent_offers_total", queue="q", result="answered") == 3
    assert value(smp, PREFIX + "dispatch_latency_seconds_count", trigger="member") == 3
    assert not m._pend_inc and not m._pend_obs
    # a plain collect of the registry sees them too
    m.offer_result("q", "answered")
    fams = {f.name: f for f in m.registry.collect()}
    got = {s.labels.get("result"): s.value for s in fams[PREFIX + "agent_offers"].samples
           if s.name.endswith("_total") and s.labels.get("queue") == "q"}
    assert got["answered"] == 4
    # many observations without a read: folded in chunks, none lost
    for _ in range(metrics_mod._MAX_PENDING_OBS + 10):
        m.core_decision(1e-6)
    assert len(m._pend_obs.get((PREFIX + "core_decision_seconds", "dispatch"), [])) == 10
    assert value(samples(m.text()), PREFIX + "core_decision_seconds_count", op="dispatch") == metrics_mod._MAX_PENDING_OBS + 10
