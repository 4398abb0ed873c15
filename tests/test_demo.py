"""``ccfast demo``: the sample call center, the traffic profile, the counting, the view, and real runs."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ccfast import config as configmod
from ccfast import strings as S
from ccfast.demo import DemoOptions, collect_frame, human_summary, run_demo, scenario, tally as tallymod, view
from ccfast.sim.profiles import ANSWER, NO_ANSWER

ROOT = Path(__file__).resolve().parent.parent


# -- the sample call center --------------------------------------------------------------------
def test_example_file_is_the_generated_sample():
    assert (ROOT / "examples/demo/callcenter.conf.xml").read_text() == scenario.sample_config(50)


def test_sample_config_loads_cleanly_with_the_required_strategies():
    cfg = configmod.load_config("demo.xml", text=scenario.sample_config(50))
    assert cfg.warnings == []
    queues = cfg.queues
    strategies = {p.strategy for p in queues.values()}
    assert {S.LONGEST_IDLE_AGENT, S.ROUND_ROBIN, S.RING_ALL, S.TOP_DOWN} <= strategies
    top_down = next(p for p in queues.values() if p.strategy == S.TOP_DOWN)
    assert top_down.tier_rules_apply
    assert len(cfg.agents) == 50
    levels = Counter((t.queue, t.level) for t in cfg.tiers)
    assert {lvl for (q, lvl) in levels if q == top_down.name} == {"1", "2", "3"}


@pytest.mark.parametrize("n", [5, 7, 50, 120])
def test_every_queue_has_agents_and_behaviours_are_mixed(n):
    specs = scenario.agents(n)
    served = {queue for a in specs for queue, _, _ in a.tiers}
    assert served == {q.name for q in scenario.QUEUES}
    if n >= 25:
        assert set(Counter(a.behaviour for a in specs)) == set(scenario.BEHAVIOURS)
    profiles = scenario.agent_profiles(n)
    assert len(profiles) == n and all(a.contact.startswith("sim/agent/") for a in specs)


def test_too_few_agents_is_refused():
    with pytest.raises(ValueError, match="at least"):
        scenario.agents(scenario.MIN_AGENTS - 1)


def test_behaviours_draw_their_outcomes():
    rng = random.Random(3)
    outcomes = Counter(scenario.behaviour("flaky").pick(rng).outcome for _ in range(400))
    assert outcomes[ANSWER] > 150 and outcomes[NO_ANSWER] > 100
    assert scenario.behaviour("absent").pick(rng).outcome == NO_ANSWER
    with pytest.raises(ValueError):
        scenario.behaviour("nope")


def test_traffic_ramps_and_draws_callers():
    t = scenario.traffic_for(4.0, 60)
    assert t.ramp_s == 20.0
    assert t.rate(0) == pytest.approx(1.2) and t.rate(10) == pytest.approx(2.6) and t.rate(30) == 4.0
    rng = random.Random(1)
    callers = [t.caller(rng, i) for i in range(2000)]
    by_queue = Counter(c.queue for c in callers)
    assert set(by_queue) == {q.name for q in scenario.QUEUES}
    assert by_queue[scenario.QUEUES[0].name] > by_queue[scenario.QUEUES[-1].name]
    with_keys = [c for c in callers if c.variables.get("cc_exit_keys") == scenario.EXIT_KEY]
    assert 100 < len(with_keys) < 300 and any(c.dtmf for c in with_keys)
    assert 0.75 < sum(c.patience is not None for c in callers) / len(callers) < 0.95
    with pytest.raises(ValueError):
        scenario.traffic_for(0, 10)


# -- counting ----------------------------------------------------------------------------------
def _ev(action, uuid, queue="q", **h):
    return action, [(S.H_CC_QUEUE, queue), ("CC-Member-Session-UUID", uuid),
                    *((k.replace("_", "-"), v) for k, v in h.items())]


def test_tally_classifies_member_ends():
    t = tallymod.Tally(["q"])
    t.patience_ran_out = lambda uuid: uuid == "gaveup"
    t.cut_at_end.add("cut")
    for uuid in ("ans", "gaveup", "other", "tmo", "key", "cut"):
        t.on_event(*_ev(S.ACTION_MEMBER_QUEUE_START, uuid))
    t.on_event(*_ev(S.ACTION_BRIDGE_AGENT_START, "ans"))
    t.on_event(*_ev(S.ACTION_MEMBER_QUEUE_END, "ans", CC_Cause=S.CAUSE_TERMINATED))
    for uuid, reason in (("gaveup", S.CANCEL_BREAK_OUT), ("other", S.CANCEL_BREAK_OUT), ("tmo", S.CANCEL_TIMEOUT),
                         ("key", S.CANCEL_EXIT_WITH_KEY), ("cut", S.CANCEL_BREAK_OUT)):
        t.on_event(*_ev(S.ACTION_MEMBER_QUEUE_END, uuid, CC_Cause=S.CAUSE_CANCEL, CC_Cancel_Reason=reason))
    assert t.outcomes == {"ans": "answered", "gaveup": "caller_hangup", "other": "break_out", "tmo": "timeout",
                          "key": "exit_key", "cut": "cut_at_end"}
    q = t.queues["q"]
    assert (q.offered, q.answered, q.abandoned, q.cut) == (6, 1, 4, 1)
    assert dict(t.abandoned_by) == {"caller_hangup": 1, "timeout": 1, "no_agent_timeout": 0, "exit_key": 1,
                                    "break_out": 1}


def test_percentile_and_stuck_detection():
    assert tallymod.percentile([], 50) is None
    values = [float(i) for i in range(1, 101)]
    assert tallymod.percentile(values, 50) == 50.0 and tallymod.percentile(values, 99) == 99.0
    assert tallymod.percentile([3.0], 99) == 3.0
    agents = [
        {"name": "a", "state": S.STATE_IN_A_QUEUE_CALL, "contact": "[leg_timeout=5]sim/agent/x"},
        {"name": "b", "state": S.STATE_RECEIVING, "contact": "sim/agent/y"},
        {"name": "c", "state": S.STATE_WAITING, "contact": "sim/agent/z"},
    ]
    assert tallymod.stuck_agents(agents, {"sim/agent/x"}) == ["b"]
    members = [{"uuid": "m1", "session_uuid": "s1", "state": S.MEMBER_WAITING},
               {"uuid": "m2", "session_uuid": "s2", "state": S.MEMBER_TRYING},
               {"uuid": "m3", "session_uuid": "s3", "state": S.MEMBER_ABANDONED}]
    assert tallymod.stuck_members(members, lambda uuid: uuid == "s1") == ["m2"]


def test_view_renders_a_frame_and_a_status_line():
    frame = {
        "elapsed": 12.0, "phase": "steady", "target_cps": 4.0, "cps": 3.6, "calls": 40, "talking": 7,
        "window_label": "1m", "footer": ["control: ccfast ctl --port 1"], "logs": ["a warning"],
        "agents": {S.STATUS_AVAILABLE: {S.STATE_WAITING: 3, S.STATE_IN_A_QUEUE_CALL: 7}},
        "queues": [{"name": "support@demo", "strategy": S.LONGEST_IDLE_AGENT, "waiting": 5, "longest_wait": 12.5,
                    "offered": 30, "answered": 20, "abandoned": 2, "sl_window": 0.8, "sl_total": 0.75,
                    "asa": 4.2, "threshold": 20}],
    }
    text = "\n".join(view.frame_lines(frame, color=False))
    for part in ("support@demo", S.LONGEST_IDLE_AGENT, "80%", "75%", "12s", "In a queue call 7", "a warning",
                 "control: ccfast ctl"):
        assert part in text
    tty = view.render_tty(frame)
    assert tty.startswith(view.HOME) and tty.endswith(view.ERASE_BELOW)
    line = view.status_line(frame)
    assert "\n" not in line and "support=5w/75%" in line and "offered=30" in line


# -- real runs -----------------------------------------------------------------------------------
async def test_demo_in_process_prints_status_lines_and_ends_clean(monkeypatch):
    import ccfast.demo as demo

    monkeypatch.setattr(demo, "LINE_INTERVAL_S", 0.5)
    out = io.StringIO()
    summary = await run_demo(DemoOptions(duration=3, drain=2, agents=10, cps=3, seed=7), out, "lines")
    text = out.getvalue().splitlines()
    assert text[0].startswith("control: ccfast ctl --port ") and text[1].startswith("metrics: http://127.0.0.1:")
    lines = text[2:]
    assert len(lines) >= 4 and all(line.startswith("t=") for line in lines)
    assert summary["calls"] > 0 and summary["queued"] == summary["calls"]
    assert summary["stuck_agents"] == 0 and summary["stuck_members"] == 0
    assert summary["live_channels_left"] == 0 and summary["settled"]
    assert summary["not_ended"] == 0
    assert (summary["agents"], summary["cps"], summary["seed"]) == (10, 3, 7)
    assert "stuck agents 0, stuck members 0" in human_summary(summary)


def test_demo_json_run():
    proc = subprocess.run(
        [sys.executable, "-m", "ccfast", "demo", "--duration", "5", "--drain", "3", "--json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["answered"] > 0 and s["calls"] >= s["answered"]
    assert s["stuck_agents"] == 0 and s["stuck_members"] == 0, (s["stuck_agent_names"], s["stuck_member_uuids"])
    assert set(s["abandoned_by_cause"]) == set(tallymod.ABANDON_CAUSES)
    assert s["abandoned"] == sum(s["abandoned_by_cause"].values())
    assert s["p50_wait_s"] is not None and s["p99_wait_s"] >= s["p50_wait_s"]
    assert (s["duration_s"], s["cps"], s["agents"], s["seed"]) == (5, 4.0, 50, 1)
    assert set(s["queues"]) == {q.name for q in scenario.QUEUES}


async def test_demo_control_port_answers_during_the_run():
    """The ports shown in the view work: callcenter_config and stats (an unknown queue is an -ERR)."""
    import trio

    from ccfast.ctl import send

    async with trio.open_nursery() as nursery:
        ctx = await nursery.start(run_demo, DemoOptions(duration=1.5, drain=1, agents=5, cps=2))
        port = ctx.running.control_port
        password = configmod.CCFAST_PARAMS["control-password"][0]
        assert (await send("127.0.0.1", port, password, "callcenter_config", "queue list")).startswith("name|strategy")
        stats = await send("127.0.0.1", port, password, "ccfast_stats", scenario.QUEUES[0].name)
        assert stats.startswith(f"queue {scenario.QUEUES[0].name}")
        assert (await send("127.0.0.1", port, password, "ccfast_stats", "nosuch@demo")).startswith("-ERR")
        frame = collect_frame(ctx)
        assert [q["name"] for q in frame["queues"]] == sorted(q.name for q in scenario.QUEUES)

