"""callcenter_config-level mutations on the core: exact errors (§7.2), stored values, events."""

from __future__ import annotations

import pytest

from ccfast import strings as S
from ccfast._core import CoreError
from ccfast.params import QueueParams
from tests.test_core_fixtures import T, actions, agent, make, member, row, tier, tier_row


def err(fn, *args) -> str:
    with pytest.raises(CoreError) as info:
        fn(*args)
    return str(info.value)


@pytest.fixture
def core():
    c = make(["q"], [agent("a")], [tier("q", "a")])
    c.drain_journal()
    c.drain_events()
    return c


def test_agent_add(core):
    core.agent_add("b", "callback", T)
    assert core.drain_journal() == [("agents", "insert", ("b",), {
        "name": "b", "instance_id": S.SINGLE_BOX, "uuid": None, "type": "callback", "contact": None,
        "status": S.STATUS_LOGGED_OUT, "state": S.STATE_WAITING, "max_no_answer": 0, "wrap_up_time": 0,
        "reject_delay_time": 0, "busy_delay_time": 0, "no_answer_delay_time": 0, "last_bridge_start": 0,
        "last_bridge_end": 0, "last_offered_call": 0, "last_status_change": 0, "no_answer_count": 0,
        "calls_answered": 0, "talk_time": 0, "ready_time": 0, "external_calls_count": 0})]
    assert core.drain_events() == [(S.ACTION_AGENT_ADD, {"CC-Agent": "b", "CC-Agent-Type": "callback",
                                                         "CC-Action": S.ACTION_AGENT_ADD})]
    assert err(core.agent_add, "b", "Callback", T) == "Agent already exist!"
    assert err(core.agent_add, "c", "sip", T) == "Agent type invalid!"


def test_agent_set_errors(core):
    assert err(core.agent_set, "status", "nobody", "Available", T) == "Agent not found!"
    assert err(core.agent_set, "nokey", "nobody", "x", T) == "Agent not found!"  # agent checked first
    assert err(core.agent_set, "status", "a", "Busy", T) == "Invalid Agent Status!"
    assert err(core.agent_set, "state", "a", "Sleeping", T) == "Invalid Agent State!"
    assert err(core.agent_set, "type", "a", "sip", T) == "Invalid Agent Type!"
    assert err(core.agent_set, "colour", "a", "red", T) == "Invalid Agent Update KEY!"
    assert err(core.agent_set, "state_if_waiting", "a", "Nope", T) == "Invalid Agent State!"


def test_agent_get(core):
    assert core.agent_get("status", "a") == S.STATUS_AVAILABLE
    assert core.agent_get("STATE", "a") == S.STATE_WAITING
    assert core.agent_get("uuid", "a") == ""
    assert err(core.agent_get, "status", "nobody") == "Agent not found!"
    assert err(core.agent_get, "contact", "a") == "Invalid Agent Update KEY!"
    assert core.drain_events() == [
        ("agent-status-get", {"CC-Agent": "a", "CC-Action": "agent-status-get", "CC-Agent-Status": S.STATUS_AVAILABLE}),
        ("agent-STATE-get", {"CC-Agent": "a", "CC-Action": "agent-STATE-get", "CC-Agent-STATE": S.STATE_WAITING}),
        ("agent-uuid-get", {"CC-Agent": "a", "CC-Action": "agent-uuid-get"}),  # empty value: header omitted
    ]


def test_status_is_stored_as_typed_and_lower_case_available_is_invisible(core):
    core.load_rows("members", [member("q", "m", T - 5)])
    core.agent_set("status", "a", S.STATUS_LOGGED_OUT, T)
    core.agent_set("status", "a", "available", T + 1)  # W11
    assert row(core, "agents", "a")["status"] == "available"
    assert core.dispatch(T + 2) == []
    core.agent_set("status", "a", "Available", T + 3)
    assert [o.agent for o in core.dispatch(T + 4)] == ["a"]


def test_status_available_resets_counters_only_when_it_changes(core):
    core.load_rows("agents", [agent("b", status=S.STATUS_ON_BREAK, calls_answered=3, talk_time=40, no_answer_count=2)])
    core.agent_set("status", "b", S.STATUS_AVAILABLE, T)
    b = row(core, "agents", "b")
    assert (b["calls_answered"], b["talk_time"], b["no_answer_count"], b["last_status_change"]) == (0, 0, 0, T)
    core.load_rows("agents", [agent("c", calls_answered=3)])
    core.drain_journal()
    core.drain_events()
    core.agent_set("status", "c", S.STATUS_AVAILABLE, T)
    assert row(core, "agents", "c")["calls_answered"] == 3 and row(core, "agents", "c")["last_status_change"] == 0
    assert core.drain_journal() == []
    assert actions(core.drain_events()) == [S.ACTION_AGENT_STATUS_CHANGE]  # fired even when nothing changed


def test_state_receiving_writes_last_offered_call(core):
    core.agent_set("state", "a", "receiving", T)
    assert core.drain_journal() == [("agents", "update", ("a",), {"state": "receiving", "last_offered_call": T})]
    assert core.drain_events() == [(S.ACTION_AGENT_STATE_CHANGE, {
        "CC-Agent": "a", "CC-Action": S.ACTION_AGENT_STATE_CHANGE, "CC-Agent-State": "receiving"})]


def test_state_if_waiting(core):
    core.agent_set("state_if_waiting", "a", S.STATE_IDLE, T)
    assert row(core, "agents", "a")["state"] == S.STATE_IDLE
    assert err(core.agent_set, "state_if_waiting", "a", S.STATE_IDLE, T) == "Agent not found!"
    assert actions(core.drain_events()) == [S.ACTION_AGENT_STATE_CHANGE]


@pytest.mark.parametrize("key, value, stored", [
    ("ready_time", "1700000123", 1700000123), ("busy_delay_time", "7", 7), ("reject_delay_time", "8x", 8),
    ("no_answer_delay_time", "junk", 0), ("max_no_answer", "3", 3), ("wrap_up_time", "12", 12),
])
def test_numeric_keys_use_atoi_and_rewrite_instance_id(core, key, value, stored):
    core.load_rows("agents", [agent("b", instance_id="box2")])
    core.agent_set(key, "b", value, T)
    b = row(core, "agents", "b")
    assert (b[key], b["instance_id"]) == (stored, S.SINGLE_BOX)
    assert core.drain_events() == []


def test_contact_and_uuid_and_type(core):
    core.agent_set("contact", "a", "sofia/x", T)
    core.agent_set("uuid", "a", "u-1", T)
    core.agent_set("type", "a", "UUID-Standby", T)
    a = row(core, "agents", "a")
    assert (a["contact"], a["uuid"], a["type"]) == ("sofia/x", "u-1", "UUID-Standby")
    assert core.drain_events() == [(S.ACTION_AGENT_CONTACT_CHANGE, {
        "CC-Agent": "a", "CC-Action": S.ACTION_AGENT_CONTACT_CHANGE, "CC-Agent-Contact": "sofia/x"})]


def test_agent_del_removes_its_tiers_without_checks(core):
    core.agent_del("nobody")
    core.agent_del("a")
    assert core.rows("agents") == [] and core.rows("tiers") == []
    assert core.drain_journal() == [("tiers", "delete", ("q", "a"), {}), ("agents", "delete", ("a",), {})]


def test_tier_add_errors_and_defaults(core):
    assert err(core.tier_add, "nope", "a") == "Queue not found!"
    assert err(core.tier_add, "q", "nobody") == "Agent not found!"
    assert err(core.tier_add, "q", "a") == "Tier already exist!"
    core.queue_set(QueueParams(name="r"))
    core.tier_add("r", "a", 2, 5)
    assert tier_row(core, "r", "a") == {"queue": "r", "agent": "a", "state": S.TIER_READY, "level": 2, "position": 5}


def test_tier_set_errors_follow_the_module_mapping(core):
    assert err(core.tier_set, "state", "q", "nobody", "Ready") == "Unknown Error!"  # tier missing first
    assert err(core.tier_set, "level", "nope", "a", "2") == "Unknown Error!"
    core.load_rows("tiers", [tier("q", "ghost"), tier("gone", "a")])
    assert err(core.tier_set, "level", "q", "ghost", "2") == "Agent not found!"
    assert err(core.tier_set, "level", "gone", "a", "2") == "Agent not found!"  # queue missing (W19)
    assert err(core.tier_set, "state", "q", "a", "Busy") == "Invalid Tier State!"
    assert err(core.tier_set, "colour", "q", "a", "x") == "Invalid Tier Update KEY!"
    core.tier_set("state", "q", "a", "standby")
    core.tier_set("level", "q", "a", "3")
    core.tier_set("position", "q", "a", "9z")
    assert tier_row(core, "q", "a") == {"queue": "q", "agent": "a", "state": "standby", "level": 3, "position": 9}


def test_tier_changes_move_the_agent_in_the_order(core):
    core.load_rows("agents", [agent("b")])
    core.tier_add("q", "b", 1, 1)
    core.tier_set("position", "q", "a", "5")
    core.load_rows("members", [member("q", "m", T - 5)])
    core.queue_set(QueueParams(name="q", strategy=S.SEQUENTIALLY_BY_AGENT_ORDER))
    assert [o.agent for o in core.dispatch(T)] == ["b"]
    core.tier_del("q", "b")
    core.tier_del("q", "nobody")  # no check
    assert [r["agent"] for r in core.rows("tiers")] == ["a"]


def test_queue_counters_and_unknown_queue(core):
    assert core.queue_counters("q") == (0, 0)
    assert err(core.queue_counters, "nope") == "Queue not found!"
    assert err(core.member_join, "nope", "m", "s", "1", "n", T, 0, T) == "Queue not found!"
    assert core.queue_names() == ["q"]
    assert core.queue_params("q").name == "q" and core.queue_params("nope") is None


def test_load_rows_refuses_unknown_tables_and_columns(core):
    with pytest.raises(ValueError, match="unknown table"):
        core.load_rows("queues", [])
    with pytest.raises(ValueError, match="unknown column"):
        core.load_rows("agents", [{"name": "x", "colour": "red"}])
    with pytest.raises(ValueError, match="duplicate agent"):
        core.load_rows("agents", [agent("a")])
