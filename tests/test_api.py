"""callcenter_config / callcenter_break / JSON API: byte-exact replies (reference §7).

Expected outputs live in tests/golden/ and were written from the reference and the module's C
code, not produced by ccfast. Everything runs against the real ``ccfast._core.Core``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccfast import api, config
from ccfast.tokenize import separate_string

GOLDEN = Path(__file__).parent / "golden"


def make_core():
    from ccfast._core import Core

    return Core()


def make_state(members: bool = True):
    golden = json.loads((GOLDEN / "api_session.json").read_text())
    cfg = config.load_config(GOLDEN / golden["config"])
    core = make_core()
    config.apply_startup(core, cfg, golden["startup_now"])
    if members:
        core.load_rows("members", golden["members"])
    return api.ApiState(core=core, config=cfg), golden


# -- tokenizer (§7.1, switch_separate_string) -------------------------------------------------


@pytest.mark.parametrize("line, tokens", [
    ("", []),
    (" ", [""]),
    ("a  b   c  ", ["a", "b", "c"]),
    ("   a", ["a"]),
    ("agent set status 1000@default 'Available (On Demand)'",
     ["agent", "set", "status", "1000@default", "Available (On Demand)"]),
    ("agent set status 1000@default Available (On Demand)",
     ["agent", "set", "status", "1000@default", "Available", "(On", "Demand)"]),
    # the 8th token takes the rest of the line, inner spaces kept, trailing ones dropped
    ("a b c d e f g h i j  k  ", ["a", "b", "c", "d", "e", "f", "g", "h i j  k"]),
    ("a 'b c", ["a", "'b c"]),  # an unmatched quote stays
    ("a '' b", ["a", "", "b"]),
    ("x 'it''s'", ["x", "its"]),
    ("a\\ b", ["a\\ b"]),  # escaped space does not split; "\ " is not an escape for cleanup
    ("\\'q\\' \\\\", ["'q'", "\\"]),
    ("\\n\\t\\s\\x", ["\n\t \\x"]),
    ("^^:a:b::c", ["a", "b", "", "c"]),
    ("^^:a\\:b:c", ["a:b", "c"]),
    ("^^, a , b ", ["a", "b"]),
    ("^^:", ["^^:"]),  # needs a character after the separator to switch
])
def test_separate_string(line, tokens):
    assert separate_string(line, " ", 8) == tokens


def test_separate_string_limit_two():
    assert separate_string("agent  uuid-1 extra words", " ", 2) == ["agent", "uuid-1 extra words"]


# -- usage and simple replies ------------------------------------------------------------------


def test_usage_text_is_byte_exact():
    expected = (GOLDEN / "usage.txt").read_bytes().decode()
    state = api.ApiState(core=make_core())
    assert api.callcenter_config(state, "", 0) == expected
    assert api.callcenter_config(state, None, 0) == expected
    assert expected.count("| \n") == 31 and expected.endswith("[queue_name]\n")


def test_shutting_down_raises():
    state = api.ApiState(core=make_core(), running=False)
    with pytest.raises(api.ApiUnavailable):
        api.callcenter_config(state, "queue list", 0)


def test_format_table_and_cells():
    assert api.format_table(("a", "b"), []) == "+OK\n"
    assert api.format_table(("a", "b"), [{"a": None, "b": 0}, {"a": "x", "b": 5}]) == "a|b\n|0\nx|5\n+OK\n"


def test_queue_list_header_even_without_queues():
    state = api.ApiState(core=make_core())
    header = "|".join(config.S.QUEUE_LIST_COLUMNS)
    assert api.callcenter_config(state, "queue list", 0) == header + "\n+OK\n"
    assert api.callcenter_config(state, "queue count", 0) == "0\n"


# -- the golden session -------------------------------------------------------------------------


def test_golden_session():
    state, golden = make_state()
    for number, (command, expected) in enumerate(golden["steps"]):
        got = api.callcenter_config(state, command, golden["now"])
        assert got == expected, f"step {number}: {command!r}"


def test_agent_get_is_cut_at_63_bytes():
    state, _ = make_state()
    long_uuid = "u" * 80
    assert api.callcenter_config(state, f"agent set uuid 1000@default {long_uuid}", 5) == "+OK\n"
    assert api.callcenter_config(state, "agent get uuid 1000@default", 5) == "u" * 63


def test_queue_unload_then_tier_add_loads_lazily():
    state, _ = make_state(members=False)
    assert api.callcenter_config(state, "queue unload sales@default", 5) == "+OK\n"
    assert state.core.queue_params("sales@default") is None
    assert api.callcenter_config(state, "tier add sales@default 1000@default", 5) == "+OK\n"
    assert state.core.queue_params("sales@default") is not None


def test_tier_set_on_unloaded_queue_missing_tier_does_not_load_it():
    state, _ = make_state(members=False)
    api.callcenter_config(state, "queue unload sales@default", 5)
    assert api.callcenter_config(state, "tier set level sales@default 1000@default 2", 5) == "-ERR Unknown Error!\n"
    assert state.core.queue_params("sales@default") is None


def test_queue_load_rereads_the_file(tmp_path):
    src = (GOLDEN / "api.conf.xml").read_text()
    path = tmp_path / "callcenter.conf.xml"
    path.write_text(src)
    cfg = config.load_config(path)
    state = api.ApiState(core=make_core(), config=cfg)
    config.apply_startup(state.core, cfg, 1)
    assert api.callcenter_config(state, "queue load new@default", 2) == "-ERR Invalid Queue not found!\n"
    path.write_text(src.replace('<queue name="sales@default">', '<queue name="new@default"><param name="strategy" value="top-down"/></queue>\n<queue name="sales@default">'))
    assert api.callcenter_config(state, "queue load new@default", 2) == "+OK\n"
    assert state.core.queue_params("new@default").strategy == "top-down"
    # an unreadable file: load fails like an absent queue, agent reload with Unknown Error
    path.write_text("<configuration")
    assert api.callcenter_config(state, "queue load new@default", 2) == "-ERR Invalid Queue not found!\n"
    assert api.callcenter_config(state, "agent reload 1000@default", 2) == "-ERR Unknown Error!\n"


# -- callcenter_break ---------------------------------------------------------------------------


def test_callcenter_break():
    seen = []
    state = api.ApiState(core=make_core(), break_channel=lambda uuid: seen.append(uuid) or uuid == "live")
    assert api.callcenter_break(state, "") == "-ERR Usage: callcenter_break agent <uuid>\n"
    assert api.callcenter_break(state, "agent") == "-ERR Usage: callcenter_break agent <uuid>\n"
    assert api.callcenter_break(state, "agent gone") == "-ERR Session not found for uuid gone\n"
    assert api.callcenter_break(state, "whatever live") == ""
    assert seen == ["gone", "live"]


# -- JSON API (§7.4) ------------------------------------------------------------------------


def test_json_api():
    state, golden = make_state()
    now = golden["now"]
    call = lambda data: api.callcenter_config_json(state, data, now)  # noqa: E731
    assert call({}) == (False, "")
    assert call({"arguments": "agent  list"}) == (False, "")
    assert call({"arguments": "queue list agents"}) == (False, '{"error":"Missing data attribute: queue_name"}')
    ok, text = call({"arguments": "QUEUE LIST"})
    assert ok
    assert json.loads(text) == [
        {"name": "sales@default", "strategy": "longest-idle-agent", "time_base_score": "queue",
         "tier_rules_apply": "false", "tier_rule_wait_second": 0, "tier_rule_wait_multiply_level": "false",
         "tier_rule_no_agent_no_wait": "true", "discard_abandoned_after": 60, "abandoned_resume_allowed": "false",
         "max_wait_time": 0, "max_wait_time_with_no_agent": 0, "max_wait_time_with_no_agent_time_reached": 5,
         "record_template": "/rec/${uuid}.wav", "skip_agents_with_external_calls": "true",
         "agent_no_answer_status": "available"},
        {"name": "support@default", "strategy": "ring-all", "moh_sound": "local_stream://moh", "time_base_score": "queue",
         "tier_rules_apply": "false", "tier_rule_wait_second": 0, "tier_rule_wait_multiply_level": "false",
         "tier_rule_no_agent_no_wait": "false", "discard_abandoned_after": 120, "abandoned_resume_allowed": "false",
         "max_wait_time": 300, "max_wait_time_with_no_agent": 0, "max_wait_time_with_no_agent_time_reached": 5,
         "skip_agents_with_external_calls": "true", "agent_no_answer_status": "On Break"},
    ]
    ok, text = call({"arguments": "agent list"})
    assert ok and json.loads(text) == [{
        "name": "1000@default", "instance_id": "single_box", "type": "callback", "contact": "user/1000@default",
        "status": "Available", "state": "Waiting", "max_no_answer": "3", "wrap_up_time": "10",
        "reject_delay_time": "10", "busy_delay_time": "60", "no_answer_delay_time": "5", "last_bridge_start": "0",
        "last_bridge_end": "0", "last_offered_call": "0", "last_status_change": "1000", "no_answer_count": "0",
        "calls_answered": "0", "talk_time": "0", "ready_time": "0", "external_calls_count": "0"}]
    ok, text = call({"arguments": "member list"})
    assert ok and [m["uuid"] for m in json.loads(text)] == ["m-2", "m-1", "m-3"]
    assert "cid_name" not in json.loads(text)[0] and json.loads(text)[0]["score"] == "600"
    ok, text = call({"arguments": "queue list members", "queue_name": "sales@default"})
    assert ok and [m["uuid"] for m in json.loads(text)] == ["m-3"]
    ok, text = call({"arguments": "tier list"})
    assert ok and json.loads(text) == [{"queue": "support@default", "agent": "1000@default", "state": "Ready",
                                        "level": "1", "position": "1"}]
    ok, text = call({"arguments": "queue list tiers", "queue_name": "sales@default"})
    assert (ok, json.loads(text)) == (True, [])
    ok, text = call({"arguments": "queue list agents", "queue_name": "support@default"})
    assert ok and [a["name"] for a in json.loads(text)] == ["1000@default"]


# -- with live dispatch state (real Core when available) ---------------------------------------

LIVE = """<configuration name="callcenter.conf"><queues>
<queue name="q"><param name="strategy" value="ring-all"/></queue></queues>
<agents>
<agent name="a1" type="callback" contact="user/a1" status="Available"/>
<agent name="a2" type="callback" contact="user/a2" status="Available"/>
</agents>
<tiers><tier agent="a1" queue="q"/><tier agent="a2" queue="q"/></tiers></configuration>"""


def live_state(text=LIVE):
    cfg = config.load_config("live.xml", text=text)
    core = make_core()
    config.apply_startup(core, cfg, 100)
    return api.ApiState(core=core, config=cfg)


def test_status_change_while_ringing_hands_cancels_to_the_service():
    state = live_state(LIVE.replace("ring-all", "longest-idle-agent"))
    core = state.core
    core.member_join("q", "m1", "s1", "100", "Bob", 100, 0, 100)
    (offer,) = core.dispatch(100)
    assert api.callcenter_config(state, f"agent set status {offer.agent} 'On Break'", 101) == "+OK\n"
    assert [(c.offer_id, c.agent, c.cause) for c in state.cancels] == [(offer.offer_id, offer.agent, "ORIGINATOR_CANCEL")]


def test_status_change_does_not_cancel_ring_all_legs():
    # §5.10: ring strategies' member rows carry the strategy marker, not the agent
    state = live_state()
    core = state.core
    core.member_join("q", "m1", "s1", "100", "Bob", 100, 0, 100)
    assert sorted(o.agent for o in core.dispatch(100)) == ["a1", "a2"]
    assert api.callcenter_config(state, "agent set status a1 'On Break'", 101) == "+OK\n"
    assert state.cancels == []


def test_queue_list_members_and_counters_from_live_state():
    state = live_state()
    core = state.core
    core.member_join("q", "m1", "s1", "100", "", 90, 0, 100)
    core.member_join("q", "m2", "s2", "200", "Ann", 95, 7, 105)
    out = api.callcenter_config(state, "queue list members q", 110)
    lines = out.split("\n")
    assert lines[0].endswith("|state|score") and out.endswith("+OK\n")
    # scores: m1 (110-100)+0 = 10; m2 (110-105)+7 = 12 -> m2 first
    assert [line.split("|")[2] for line in lines[1:3]] == ["m2", "m1"]
    assert [line.split("|")[-1] for line in lines[1:3]] == ["12", "10"]
    assert lines[2].split("|")[5] == ""  # empty cid_name stays an empty field
    core.member_cancel("m1", "BREAK_OUT", 111)
    row = api.callcenter_config(state, "queue list", 111).split("\n")[1].split("|")
    assert (row[0], row[14], row[15]) == ("q", "0", "1")  # calls_answered, calls_abandoned
    assert api.callcenter_config(state, "queue count members q", 111) == "2\n"  # Abandoned counts too
    # queue reload: counters restart at 0, members are kept
    assert api.callcenter_config(state, "queue reload q", 112) == "+OK\n"
    row = api.callcenter_config(state, "queue list", 112).split("\n")[1].split("|")
    assert (row[14], row[15]) == ("0", "0")
    assert api.callcenter_config(state, "queue count members q", 112) == "2\n"


def test_agent_get_fires_the_event_with_the_key_as_typed():
    state = live_state()
    core = state.core
    core.drain_events()
    assert api.callcenter_config(state, "agent get STATE a1", 100) == "Waiting"
    action, headers = core.drain_events()[-1]
    assert action == "agent-STATE-get"
    assert list(headers)[-1] == "CC-Agent-STATE" and headers["CC-Agent-STATE"] == "Waiting"


def test_unloading_a_queue_with_waiting_members_reloads_it_from_xml():
    state = live_state()
    core = state.core
    assert api.callcenter_config(state, "queue unload q", 100) == "+OK\n"
    assert api.callcenter_config(state, "queue count", 100) == "0\n"  # no members: stays unloaded
    assert api.callcenter_config(state, "queue load q", 100) == "+OK\n"
    core.member_join("q", "m1", "s1", "100", "Bob", 100, 0, 100)
    assert api.callcenter_config(state, "queue unload q", 101) == "+OK\n"
    assert api.callcenter_config(state, "queue count", 101) == "1\n"  # looked up again: back from XML
    core.dispatch(102)
    assert api.callcenter_config(state, "queue count members q", 102) == "1\n"  # the caller is kept
