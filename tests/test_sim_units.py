"""Simulator internals: dial-string parsing, profiles, CLI argument parsing."""

from __future__ import annotations

import argparse

import pytest

from ccfast.sim import AgentProfile, DialStringError, ProfileTable, parse_originate
from ccfast.sim.__main__ import _hostport, _profile
from ccfast.sim.profiles import sample


def test_global_and_leg_vars_global_wins():
    o = parse_originate("{g1=global,foo=globalfoo}[leg_timeout=5,foo=bar]loopback/a/cc &park()")
    leg = o.groups[0][0]
    assert leg.endpoint == "loopback/a/cc" and o.app == "park" and o.app_arg == ""
    assert o.leg_vars(leg) == {"leg_timeout": "5", "foo": "globalfoo", "g1": "global"}


def test_quoting_and_escaped_commas():
    o = parse_originate("{x='with space',y=a\\,b,z='a,b'}sim/agent/a &park()")
    assert o.global_vars["x"] == "with space"
    assert o.global_vars["y"] == "a,b"
    assert o.global_vars["z"] == "a"          # quotes do not protect commas


def test_unquoted_space_breaks_the_dial_string():
    with pytest.raises(DialStringError) as ei:
        parse_originate("{x=with space}loopback/a/cc &park()")
    assert ei.value.cause == "DESTINATION_OUT_OF_ORDER"


def test_simultaneous_and_sequential_groups():
    o = parse_originate("{a=1}[origination_uuid=u1]sim/x,[origination_uuid=u2]sim/y|sim/z &park()")
    assert [[l.endpoint for l in g] for g in o.groups] == [["sim/x", "sim/y"], ["sim/z"]]
    assert o.groups[0][1].vars == {"origination_uuid": "u2"}


def test_angle_vars_rejected_and_extension_target():
    with pytest.raises(DialStringError) as ei:
        parse_originate("<foo=x>loopback/a/cc &park()")
    assert ei.value.cause == "CHAN_NOT_IMPLEMENTED"
    o = parse_originate("sim/agent/a 1000 XML default 'Bob B' 5551 30")
    assert o.extension == "1000" and o.context == "default" and o.cid_name == "Bob B"
    assert o.timeout == 30.0
    with pytest.raises(ValueError, match="USAGE"):
        parse_originate("sim/agent/a")


def test_profile_resolution_and_mix():
    t = ProfileTable({"a1": AgentProfile("a1", ring_time=1.0)})
    assert t.resolve("sim/agent/a1").profile.ring_time == 1.0
    assert t.resolve("loopback/agent_busy/cc").profile.outcome == "USER_BUSY"
    assert t.resolve("loopback/agent_delay_1_250/cc").profile.ring_time == 0.25
    assert t.resolve("loopback/unknown/cc").cause == "NO_ROUTE_DESTINATION"
    assert t.resolve("user/1001@default").cause == "USER_NOT_REGISTERED"
    assert t.resolve("error/USER_BUSY").cause == "USER_BUSY"
    import random
    mix = AgentProfile("m", mix=[(1, AgentProfile("x")), (1, AgentProfile("y"))])
    rng = random.Random(1)
    picks = {mix.pick(rng).name for _ in range(50)}
    assert picks == {"x", "y"}
    assert 1.0 <= sample((1.0, 2.0), rng) <= 2.0
    with pytest.raises(ValueError):
        sample("bad", rng)


def test_cli_parsers():
    assert _hostport("127.0.0.1:8021") == ("127.0.0.1", 8021)
    with pytest.raises(argparse.ArgumentTypeError):
        _hostport("nohost")
    p = _profile("a1=answer:0.5:30")
    assert (p.name, p.outcome, p.ring_time, p.talk_time) == ("a1", "answer", 0.5, 30.0)
    with pytest.raises(argparse.ArgumentTypeError):
        _profile("a1=maybe")


@pytest.mark.parametrize("text", [
    "{a=1,b=2}sim/agent/a1 &park()",
    "{a='x y',b=2}sim/agent/a1 &park()",
    "{a=1}[x=2]sim/a,sim/b|sim/c &bridge(user/1) XML default 'Al Bo' 123 30",
    "{a=p\\,q}loopback/agent_park_1/cc &park()",
    "sim/a &playback(a b)",
    "sim/a &x)(y",
    "{a=1}sim/a>b,c 1000",
    "sim/a|sim/b,sim/c  &echo()  ",
])
def test_dialstring_shortcuts_agree_with_the_loops(text, monkeypatch):
    """parse_originate's plain-split shortcuts give what the character loops give."""
    import ccfast.sim.dialstring as ds

    fast = None
    try:
        fast = ds.parse_originate(text)
    except (DialStringError, ValueError) as exc:
        fast = ("error", type(exc), str(exc))
    assert ds.split_args(text.strip()) == ds._split_args_loop(text.strip())
    # the reference loops: _split_top's shortcut never applies, _split_unescaped always loops
    monkeypatch.setattr(ds, "_NO_NESTING", ds.re.compile(r"(?!)"))
    monkeypatch.setattr(ds, "_split_unescaped", ds._split_unescaped_loop)
    monkeypatch.setattr(ds, "split_args", ds._split_args_loop)
    try:
        slow = ds.parse_originate(text)
    except (DialStringError, ValueError) as exc:
        slow = ("error", type(exc), str(exc))
    assert fast == slow


def test_new_uuid_is_a_version_4_uuid():
    import uuid

    from ccfast.sim.switch import new_uuid

    seen = set()
    for _ in range(2000):
        u = new_uuid()
        parsed = uuid.UUID(u)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == u
        seen.add(u)
    assert len(seen) == 2000


def test_reply_shortcuts_match_the_protocol_writers():
    """server.api_response / bgapi_reply (cached or formatted directly) give esl's bytes."""
    from ccfast import esl
    from ccfast.sim.server import api_response, bgapi_reply

    for text in ("+OK\n", "+OK\n", "-ERR No such channel!\n", "", "+OK abc\n", b"raw\n", "caf\u00e9\n", "true"):
        assert api_response(text) == esl.write_api_response(text)
        assert api_response(text) == esl.write_api_response(text)    # (now from the cache)
    for job in ("11111111-2222-3333-4444-555555555555", "j1", "caf\u00e9", "a:b"):
        assert bgapi_reply(job) == esl.write_bgapi_reply(job)
