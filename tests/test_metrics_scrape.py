"""Scrape /metrics over real TCP after a scripted run; check values equal what was fed."""

import json

from prometheus_client.parser import text_string_to_metric_families

from ccfast import strings as S
from ccfast.httpd import Health, bound_port, serve_http
from ccfast.kpi import KpiTracker
from ccfast.metrics import PREFIX, SL_THRESHOLDS, Metrics, StateSnapshot
from ccfast.params import QueueParams
from .ccfast_http_client import get

NOW = 2000.0


def ev(action, **headers):
    return action, {k.replace("_", "-"): str(v) for k, v in headers.items()}


def scripted_run(m: Metrics) -> dict:
    """A small call-center hour, as the core's events plus the service's own calls.
    Returns what happened, counted independently of the metrics code."""
    q, other = "support", "sales"
    events = []
    expect = {"ended": {q: 0, other: 0}, "outcomes": {}, "answered_waits": [], "joins": 0}

    def join(queue, member):
        events.append(ev(S.ACTION_MEMBER_QUEUE_START, CC_Queue=queue, CC_Member_UUID=member))
        expect["joins"] += 1

    def ended(queue, outcome):
        expect["ended"][queue] += 1
        expect["outcomes"][(queue, outcome)] = expect["outcomes"].get((queue, outcome), 0) + 1

    # 12 answered members with waits 2, 5, ..., 35 (4 of them over 20 s... computed below)
    for i in range(12):
        member = f"ans{i}"
        wait = 2 + 3 * i
        join(q, member)
        events.append(ev(S.ACTION_BRIDGE_AGENT_START, CC_Queue=q, CC_Agent=f"a{i % 3}", CC_Member_UUID=member,
                         CC_Agent_Answered_Time=1000 + wait, CC_Member_Joined_Time=1000))
        events.append(ev(S.ACTION_MEMBER_QUEUE_END, CC_Queue=q, CC_Member_UUID=member, CC_Cause="Terminated",
                         CC_Agent=f"a{i % 3}", CC_Agent_Answered_Time=1000 + wait,
                         CC_Member_Leaving_Time=1000 + wait + 60, CC_Member_Joined_Time=1000))
        ended(q, "answered")
        expect["answered_waits"].append(wait)
    # cancels of every kind
    cancels = [("ab0", "BREAK_OUT", True, 4), ("ab1", "BREAK_OUT", True, 40), ("to0", "TIMEOUT", False, 120),
               ("na0", "NO_AGENT_TIMEOUT", False, 5), ("ek0", "EXIT_WITH_KEY", False, 9),
               ("bo0", "BREAK_OUT", False, 3)]
    outcome_of = {"ab": "abandoned", "to": "timeout", "na": "no_agent_timeout", "ek": "exit_key", "bo": "break_out"}
    for member, reason, hung_up, wait in cancels:
        join(q, member)
        if hung_up:
            m.member_hung_up(member)
        events.append(ev(S.ACTION_MEMBER_QUEUE_END, CC_Queue=q, CC_Member_UUID=member, CC_Cause="Cancel",
                         CC_Cancel_Reason=reason, CC_Member_Leaving_Time=1000 + wait, CC_Member_Joined_Time=1000))
        ended(q, outcome_of[member[:2]])
    # offers that failed
    for cause in ("NO_ANSWER", "USER_BUSY", "CALL_REJECTED", "USER_NOT_REGISTERED", "LOSE_RACE"):
        events.append(ev(S.ACTION_BRIDGE_AGENT_FAIL, CC_Queue=q, CC_Agent="a9", CC_Member_UUID="x",
                         CC_Hangup_Cause=cause))
    # the other queue: one answered through the explicit API, one timeout
    join(other, "s1")
    m.member_ended(other, "answered", 7, NOW)
    ended(other, "answered")
    m.call_ended(other, 50, 5, NOW)
    join(other, "s2")
    m.member_ended(other, "timeout", 300, NOW)
    ended(other, "timeout")
    m.observe_events(events, NOW)
    expect["events"] = len(events)
    return expect


def parse(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def pick(smp, name, **labels):
    """Samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return {lbl: v for (n, lbl), v in smp.items() if n == name and want <= set(lbl)}


async def test_scrape_over_tcp_matches_scripted_run(nursery):
    m = Metrics(kpi=KpiTracker(window=900, bucket=10), clock=lambda: NOW)
    for name in ("support", "sales"):
        m.set_queue(QueueParams(name=name, service_level_threshold=20))
    m.set_snapshot_provider(lambda now: StateSnapshot(
        members={("support", "Waiting"): 2, ("sales", "Waiting"): 0}, oldest_wait={"support": 33.0, "sales": 0.0},
        available_agents={"support": 1, "sales": 0}, esl_links={"fs1": True}))
    expect = scripted_run(m)
    listeners = await nursery.start(serve_http, "127.0.0.1", 0, m, lambda: Health({"fs1": True}))
    port = bound_port(listeners)

    status, headers, body = await get(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    smp = parse(body.decode())

    # members that ended = sum over outcomes, per queue, and equals joins overall
    for queue, n in expect["ended"].items():
        by_outcome = pick(smp, PREFIX + "queue_calls_total", queue=queue)
        assert sum(by_outcome.values()) == n
        answered = by_outcome[(("outcome", "answered"), ("queue", queue))]
        others = sum(v for lbl, v in by_outcome.items() if dict(lbl)["outcome"] != "answered")
        assert answered + others == n
    assert sum(pick(smp, PREFIX + "queue_calls_total").values()) == expect["joins"]
    assert sum(pick(smp, PREFIX + "queue_joins_total").values()) == expect["joins"]
    for (queue, outcome), n in expect["outcomes"].items():
        assert smp[(PREFIX + "queue_calls_total", (("outcome", outcome), ("queue", queue)))] == n
        # every ended member was observed in the wait histogram under the same outcome
        assert smp[(PREFIX + "queue_wait_seconds_count", (("outcome", outcome), ("queue", queue)))] == n

    # histogram buckets: SL thresholds present, cumulative counts right
    les = {float(dict(lbl)["le"]) for lbl in pick(smp, PREFIX + "queue_wait_seconds_bucket", queue="support",
                                                    outcome="answered")}
    assert set(map(float, SL_THRESHOLDS)) <= les
    waits = expect["answered_waits"]
    for t in SL_THRESHOLDS:
        got = smp[(PREFIX + "queue_wait_seconds_bucket", (("le", f"{float(t)}"), ("outcome", "answered"),
                                                          ("queue", "support")))]
        assert got == sum(1 for w in waits if w <= t), t
    assert smp[(PREFIX + "queue_wait_seconds_sum", (("outcome", "answered"), ("queue", "support")))] == sum(waits)

    # offers by result
    offers = {dict(lbl)["result"]: v for lbl, v in pick(smp, PREFIX + "agent_offers_total", queue="support").items()}
    assert offers == {"answered": 12, "no_answer": 1, "busy": 1, "reject": 1, "failed": 1, "cancelled": 1}
    assert sum(pick(smp, PREFIX + "events_fired_total").values()) == expect["events"]
    assert smp[(PREFIX + "talk_time_seconds_count", (("queue", "support"),))] == 12
    assert smp[(PREFIX + "talk_time_seconds_sum", (("queue", "support"),))] == 12 * 60

    # KPI gauges: service level = answered within 20 s / answered
    within = sum(1 for w in waits if w <= 20)
    sl = smp[(PREFIX + "queue_service_level_ratio", (("queue", "support"), ("window", "15m")))]
    assert sl == within / len(waits)
    abandons_within = 1  # ab0 waited 4 s, ab1 40 s
    sla = smp[(PREFIX + "queue_service_level_with_abandons_ratio", (("queue", "support"), ("window", "since_start")))]
    assert sla == (within + abandons_within) / (len(waits) + 2)
    assert smp[(PREFIX + "queue_abandon_ratio", (("queue", "support"), ("window", "15m")))] == 2 / 18
    assert smp[(PREFIX + "queue_average_handle_time_seconds", (("queue", "sales"), ("window", "15m")))] == 55
    # state gauges from the provider
    assert smp[(PREFIX + "queue_oldest_wait_seconds", (("queue", "support"),))] == 33
    assert smp[(PREFIX + "esl_link_up", (("box", "fs1"),))] == 1
    # process metrics are there too
    assert any(name.startswith("process_") for name, _ in smp)


async def test_healthz_follows_esl_link(nursery):
    m = Metrics(process_metrics=False)
    links = {"fs1": True, "fs2": True}
    listeners = await nursery.start(serve_http, "127.0.0.1", 0, m,
                                    lambda: Health(esl_links=dict(links), last_dispatch=NOW - 2))
    port = bound_port(listeners)
    status, _, body = await get(port, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    links["fs2"] = False  # the ESL link is cut
    status, headers, body = await get(port, "/healthz")
    info = json.loads(body)
    assert status == 503 and headers["content-type"] == "application/json"
    assert info["status"] == "unhealthy" and info["reasons"] == ["ESL link to fs2 is down"]
    assert info["esl_links"] == {"fs1": True, "fs2": False}
    links["fs2"] = True  # reconnected
    status, _, body = await get(port, "/healthz")
    assert status == 200 and json.loads(body)["reasons"] == []
