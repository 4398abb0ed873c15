"""The service's metrics over real TCP during a simulated run (simulator + ccfast, issue 6 §4).

Every expected number is counted from what the simulator saw (callers' records, originated
legs, api commands) or from the service's own counters, never from the metrics code."""

from __future__ import annotations

import json

import trio
from prometheus_client.parser import text_string_to_metric_families

from ccfast import strings as S
from ccfast.metrics import PREFIX, SL_THRESHOLDS
from ccfast.sim import AgentProfile, CallerSpec

from .ccfast_http_client import get
from .e2e_harness import agent, conf, finish, open_callcenter, queue, tier

SUPPORT = "support@default"
WAIT = "wait@default"  # no agents: its callers time out or hang up
BOX = "sim"


def parse(text: str) -> dict:
    """{(sample name, frozenset(labels)): value} from the exposition text."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum over every sample of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def scrape(port: int) -> dict:
    status, _headers, body = await get(port, "/metrics")
    assert status == 200
    return parse(body.decode())


async def healthz(port: int) -> tuple[int, dict]:
    status, _headers, body = await get(port, "/healthz")
    return status, json.loads(body)


CONF = conf(
    queue(name=SUPPORT) + queue(("max-wait-time", "1"), name=WAIT),
    agent("a1@default", "sim/agent/a1") + agent("busy@default", "sim/agent/busy1", busy_delay_time="60"),
    tier("a1@default", queue_name=SUPPORT) + tier("busy@default", queue_name=SUPPORT),
)
PROFILES = {
    "a1": AgentProfile("a1", talk_time=0.15),
    "busy1": AgentProfile("busy1", outcome="USER_BUSY", fail_time=0.01),
}


async def test_metrics_during_a_simulated_run_match_what_the_run_did():
    async with open_callcenter(CONF, profiles=PROFILES) as env:
        port = env.running.metrics_port
        answered = [env.spawn(CallerSpec(queue=SUPPORT)) for _ in range(3)]
        abandoner = env.spawn(CallerSpec(queue=WAIT, patience=0.3))
        waiter = env.spawn(CallerSpec(queue=WAIT))  # max-wait-time 1 s
        with trio.fail_after(10):
            for record in (*answered, abandoner, waiter):
                await record.done.wait()
        await env.quiesce()
        assert [r.outcome for r in answered] == ["bridged"] * 3
        assert abandoner.abandoned and abandoner.bridged_at is None
        assert waiter.bridged_at is None and not waiter.abandoned
        await env.wait_for(lambda: not env.running.writer.backlog, what="journal written")

        m = await scrape(port)
        svc = env.service

        # members: every outcome, and they add up to the members that left
        calls = PREFIX + "queue_calls_total"
        assert value(m, calls, queue=SUPPORT, outcome="answered") == 3
        assert value(m, calls, queue=WAIT, outcome="abandoned") == 1
        assert value(m, calls, queue=WAIT, outcome="timeout") == 1
        ended = total(m, calls)
        assert ended == 5 == svc.stats["members_left"]
        assert (total(m, calls, outcome="answered") + total(m, calls, outcome="abandoned")
                + total(m, calls, outcome="timeout")) == ended
        assert total(m, PREFIX + "queue_joins_total") == 5

        # offers by result = the legs the simulator created, by the agent they rang
        legs = env.legs()
        offers = PREFIX + "agent_offers_total"
        busy_legs = sum("busy1" in leg.endpoint for leg in legs)
        assert busy_legs == 1  # busy-delay-time keeps it out after its one refusal
        assert value(m, offers, queue=SUPPORT, result="busy") == busy_legs
        assert value(m, offers, queue=SUPPORT, result="answered") == len(legs) - busy_legs == 3
        assert total(m, offers) == len(legs)

        # dispatch latency: one observation per originate the simulator received
        originates = len(env.api_calls("originate"))
        assert originates == len(legs) == 4
        latency = PREFIX + "dispatch_latency_seconds_count"
        assert total(m, latency) == originates
        # the first offers follow a join; later ones follow a1 coming free (one agent, 3 callers)
        assert value(m, latency, trigger="member") >= 1
        assert value(m, latency, trigger="agent") >= 2
        assert value(m, PREFIX + "dispatch_latency_seconds_bucket", trigger="agent", le="+Inf") == \
            value(m, latency, trigger="agent")

        # core decision: one observation per dispatch pass; last dispatch time set
        assert value(m, PREFIX + "core_decision_seconds_count", op="dispatch") == svc.dispatcher.passes > 0
        assert value(m, PREFIX + "last_dispatch_timestamp_seconds") == svc.dispatcher.last_pass

        # ESL: events received, command round trips for what ccfast sent
        client = svc.boxes[BOX].client
        assert value(m, PREFIX + "esl_events_received_total", box=BOX) == client.events.received > 0
        assert value(m, PREFIX + "esl_reconnects_total", box=BOX) == 0
        assert value(m, PREFIX + "esl_overflow_drops_total", box=BOX) == 0
        assert value(m, PREFIX + "esl_link_up", box=BOX) == 1
        cmd = PREFIX + "esl_command_seconds_count"
        assert value(m, cmd, box=BOX, command="originate") == originates
        assert value(m, cmd, box=BOX, command="uuid_bridge") == len(env.api_calls("uuid_bridge")) == 3

        # store: rows and batches the writer committed
        stats = env.running.writer.stats
        assert value(m, PREFIX + "store_rows_written_total", backend="sqlite") == stats.rows_written > 0
        assert value(m, PREFIX + "store_batch_write_seconds_count", backend="sqlite") == stats.batches > 0

        # the wait histogram has every service-level threshold as a bucket; waits are counted
        les = {float(dict(ls)["le"]) for (n, ls) in m if n == PREFIX + "queue_wait_seconds_bucket"
               and dict(ls).get("queue") == WAIT and dict(ls).get("outcome") == "timeout"}
        assert set(map(float, SL_THRESHOLDS)) <= les
        assert value(m, PREFIX + "queue_wait_seconds_count", queue=WAIT, outcome="timeout") == 1
        assert value(m, PREFIX + "queue_wait_seconds_bucket", queue=WAIT, outcome="timeout", le="5.0") == 1
        assert value(m, PREFIX + "queue_wait_seconds_count", queue=SUPPORT, outcome="answered") == 3

        # a second scrape adds nothing that did not happen (the counters folded in at scrape
        # time are not counted twice)
        again = await scrape(port)
        assert value(again, PREFIX + "store_rows_written_total", backend="sqlite") == stats.rows_written
        assert value(again, PREFIX + "esl_command_seconds_count", box=BOX, command="originate") == originates
        await finish(env)


async def test_healthz_goes_unhealthy_when_the_esl_link_drops_and_recovers_after_reconnect():
    async with open_callcenter(CONF, profiles=PROFILES) as env:
        port = env.running.metrics_port
        box = env.service.boxes[BOX]
        status, body = await healthz(port)
        assert status == 200 and body["status"] == "ok" and body["esl_links"] == {BOX: True}

        env.sim.refuse_connections = True
        assert env.sim.drop_connections() >= 1
        await env.wait_for(lambda: not box.up, what="link down")
        status, body = await healthz(port)
        assert status == 503 and body["status"] == "unhealthy"
        assert body["esl_links"] == {BOX: False} and body["reasons"]
        m = await scrape(port)
        assert value(m, PREFIX + "esl_link_up", box=BOX) == 0

        env.sim.refuse_connections = False
        await env.wait_for(lambda: box.up, timeout=10, what="link back up")
        status, body = await healthz(port)
        assert status == 200 and body["esl_links"] == {BOX: True}
        m = await scrape(port)
        assert value(m, PREFIX + "esl_link_up", box=BOX) == 1
        assert value(m, PREFIX + "esl_reconnects_total", box=BOX) == box.client.reconnects == 1

        # calls still work after the reconnect
        record = env.spawn(CallerSpec(queue=SUPPORT))
        with trio.fail_after(5):
            await record.done.wait()
        assert record.outcome == "bridged"
        await finish(env)
