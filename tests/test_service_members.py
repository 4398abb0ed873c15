"""Members (reference §3) end to end: a simulated caller runs ``socket`` to ccfast over real TCP.

Every behaviour of issue 4 §2 is checked through what the simulated FreeSWITCH box shows (channel
variables, applications run, api commands received) and through the ``callcenter::info`` events of
the control port. Whole-second rules (max-wait, discard) use 1-second values.
"""

from __future__ import annotations

import trio

from ccfast import strings as S
from ccfast.sim import AgentProfile, CallerSpec

from .e2e_harness import Q, agent, conf, finish, open_callcenter, queue, tier, wait_playing

# -- join ---------------------------------------------------------------------------------------

async def test_join_sets_the_member_variables_and_answers():
    async with open_callcenter(conf(queue())) as env:
        await env.watch_events()
        before = env.service.clock.now()
        rec = env.spawn(CallerSpec(queue=Q, variables={"cc_agent_found": "true", "cc_agent_bridged": "true"}))
        start = await env.wait_event(S.ACTION_MEMBER_QUEUE_START)
        ch = env.channel(rec.member_uuid)
        await env.wait_for(lambda: "cc_member_uuid" in ch.vars)
        assert ch.vars["cc_side"] == "member"
        assert ch.vars["cc_member_uuid"] == start.get("CC-Member-UUID") != rec.member_uuid
        assert ch.vars["cc_queue"] == Q
        assert before <= int(ch.vars["cc_queue_joined_epoch"]) <= env.service.clock.now()
        assert "cc_agent_found" not in ch.vars and "cc_agent_bridged" not in ch.vars  # unset at join
        await env.wait_for(lambda: ch.answered)
        assert start.get("CC-Member-Session-UUID") == rec.member_uuid
        member = env.core.rows("members")[0]
        assert member["uuid"] == ch.vars["cc_member_uuid"] and member["state"] == S.MEMBER_WAITING
        assert member["session_uuid"] == rec.member_uuid and member["cid_number"] == "5551000"
        env.hangup_caller(rec)
        await finish(env)


async def test_a_caller_without_a_known_queue_goes_on_in_the_dialplan_unanswered():
    async with open_callcenter(conf(queue())) as env:
        rec = env.spawn(CallerSpec(queue="nosuch@default", after_socket=[("set", "fell_through=yes")]))
        with trio.fail_after(3):
            await rec.done.wait()
        ch = env.channel(rec.member_uuid)
        assert rec.continued_in_dialplan and ch.vars.get("fell_through") == "yes"
        assert not ch.answered and "cc_member_uuid" not in ch.vars
        assert env.core.rows("members") == []
        await finish(env)


# -- hold music ----------------------------------------------------------------------------------

async def test_moh_sound_of_the_queue_is_played():
    async with open_callcenter(conf(queue(("moh-sound", "local_stream://moh")))) as env:
        rec = env.spawn(CallerSpec(queue=Q))
        app = await wait_playing(env, rec.member_uuid)
        assert (app.name, app.arg) == ("playback", "local_stream://moh")
        env.hangup_caller(rec)
        await finish(env)


async def test_cc_moh_override_replaces_the_queue_moh():
    async with open_callcenter(conf(queue(("moh-sound", "local_stream://moh")))) as env:
        rec = env.spawn(CallerSpec(queue=Q, variables={"cc_moh_override": "local_stream://other"}))
        app = await wait_playing(env, rec.member_uuid)
        assert (app.name, app.arg) == ("playback", "local_stream://other")
        env.hangup_caller(rec)
        await finish(env)


async def test_moh_with_config_global_is_passed_to_freeswitch_as_a_channel_expansion():
    moh = queue(("moh-sound", "$${hold_music}"))
    async with open_callcenter(conf(moh)) as env:
        rec = env.spawn(CallerSpec(queue=Q))
        app = await wait_playing(env, rec.member_uuid)
        assert app.arg == "${hold_music}"
        env.hangup_caller(rec)
        await finish(env)


async def test_moh_expands_member_channel_variables():
    moh = queue(("moh-sound", "/sounds/${moh_lang}/hold.wav"))
    async with open_callcenter(conf(moh)) as env:
        rec = env.spawn(CallerSpec(queue=Q, variables={"moh_lang": "fr"}))
        app = await wait_playing(env, rec.member_uuid)
        assert app.arg == "/sounds/fr/hold.wav"
        env.hangup_caller(rec)
        await finish(env)


async def test_moh_restarts_when_the_file_ends():
    # Timings.fast(): an ordinary file plays 0.1 s
    async with open_callcenter(conf(queue(("moh-sound", "/sounds/hold.wav"))), history=True) as env:
        rec = env.spawn(CallerSpec(queue=Q))
        await wait_playing(env, rec.member_uuid)
        await trio.sleep(0.45)
        starts = env.sim.switch.history[rec.member_uuid].count("PLAYBACK_START")
        assert starts >= 3, env.sim.switch.history[rec.member_uuid]
        env.hangup_caller(rec)
        await finish(env)


async def test_unplayable_moh_leaves_the_caller_in_silence(monkeypatch):
    # The simulator plays every path; emulate FreeSWITCH's answer for a missing file.
    from ccfast.sim import apps

    real_play = apps._play

    def play(sw, ch, app):
        if "missing" in app.arg:
            sw.later(sw.t.tick, apps.complete, sw, ch, app, "FILE NOT FOUND")
            return
        real_play(sw, ch, app)

    monkeypatch.setattr(apps, "_play", play)
    async with open_callcenter(conf(queue(("moh-sound", "/sounds/missing.wav"))), history=True) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        await env.wait_event(S.ACTION_MEMBER_QUEUE_START)
        await trio.sleep(0.3)
        history = env.sim.switch.history[rec.member_uuid]
        assert history.count("CHANNEL_EXECUTE_COMPLETE") >= 2  # answer, the failed playback
        plays = [e for e in history if e == "CHANNEL_EXECUTE"]
        assert len(plays) == 2, history  # answer + one playback attempt, not retried
        assert rec.outcome == "active" and env.core.rows("members")[0]["state"] == S.MEMBER_WAITING
        env.hangup_caller(rec)
        await finish(env)


# -- announcements -------------------------------------------------------------------------------

async def test_announce_sound_is_displaced_onto_the_member_every_announce_frequency():
    q = queue(("moh-sound", "local_stream://moh"), ("announce-sound", "/sounds/position.wav"),
              ("announce-frequency", "1"))
    async with open_callcenter(conf(q)) as env:
        rec = env.spawn(CallerSpec(queue=Q))
        ch = env.channel(rec.member_uuid)
        await wait_playing(env, rec.member_uuid)
        joined = trio.current_time()
        await env.wait_for(lambda: ch.vars.get("displace_file") == "/sounds/position.wav", timeout=2)
        first = trio.current_time() - joined
        await env.wait_for(lambda: len([a for _, a in env.api_calls("uuid_displace") if " start " in a]) >= 2,
                           timeout=2)
        starts = [(t, a) for t, a in env.api_calls("uuid_displace") if " start " in a]
        stops = [(t, a) for t, a in env.api_calls("uuid_displace") if " stop " in a]
        assert 0.9 <= first <= 1.5
        assert 0.9 <= starts[1][0] - starts[0][0] <= 1.2
        assert starts[0][1] == f"{rec.member_uuid} start /sounds/position.wav 0"
        # the previous displacement of the same file is stopped before each start
        assert stops and stops[0][1] == f"{rec.member_uuid} stop /sounds/position.wav"
        assert stops[-1][0] <= starts[-1][0]
        # the hold music goes on under the announcement
        assert ch.current_app().arg == "local_stream://moh"
        env.hangup_caller(rec)
        await finish(env)


async def test_no_announcement_without_announce_frequency():
    q = queue(("announce-sound", "/sounds/position.wav"))
    async with open_callcenter(conf(q)) as env:
        rec = env.spawn(CallerSpec(queue=Q))
        await trio.sleep(1.2)
        assert env.api_calls("uuid_displace") == []
        env.hangup_caller(rec)
        await finish(env)


# -- leaving the queue ---------------------------------------------------------------------------

async def test_exit_key_sets_cc_exit_key_and_returns_to_the_dialplan():
    async with open_callcenter(conf(queue(("moh-sound", "local_stream://moh")))) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, variables={"cc_exit_keys": "#9"}, dtmf=[(0.1, "5"), (0.2, "9")],
                                   after_socket=[("set", "after=yes"), ("park", "")]))
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END)
        assert end.get("CC-Cause") == "Cancel" and end.get("CC-Cancel-Reason") == S.CANCEL_EXIT_WITH_KEY
        ch = env.channel(rec.member_uuid)
        await env.wait_for(lambda: ch.vars.get("after") == "yes")
        assert ch.vars["cc_exit_key"] == "9"
        assert ch.vars["cc_cause"] == "cancel" and ch.vars["cc_cancel_reason"] == S.CANCEL_EXIT_WITH_KEY
        assert int(ch.vars["cc_queue_canceled_epoch"]) >= int(ch.vars["cc_queue_joined_epoch"])
        assert rec.resumed and rec.continued_in_dialplan and ch.alive
        # the digit "5" (not an exit key) did not end the wait before "9"
        assert float(end.get("CC-Member-Leaving-Time")) >= float(end.get("CC-Member-Joined-Time"))
        assert len(env.find_events(S.ACTION_MEMBER_QUEUE_END)) == 1
        row = env.core.rows("members")[0]
        assert row["state"] == S.MEMBER_ABANDONED and row["session_uuid"] == ""
        assert env.core.queue_counters(Q) == (0, 1)
        env.hangup(rec.member_uuid)
        await finish(env)


async def test_a_digit_outside_cc_exit_keys_does_not_leave():
    async with open_callcenter(conf(queue())) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, variables={"cc_exit_keys": "9"}, dtmf=[(0.05, "1")]))
        await trio.sleep(0.3)
        assert rec.outcome == "active" and not env.find_events(S.ACTION_MEMBER_QUEUE_END)
        env.hangup_caller(rec)
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END)
        assert end.get("CC-Cancel-Reason") == S.CANCEL_BREAK_OUT
        await finish(env)


async def test_caller_hangup_while_waiting_is_break_out_and_leaves_an_abandoned_row():
    async with open_callcenter(conf(queue())) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, patience=0.2))
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END)
        assert end.get("CC-Cause") == "Cancel" and end.get("CC-Cancel-Reason") == S.CANCEL_BREAK_OUT
        assert end.get("CC-Member-Session-UUID") == rec.member_uuid
        await env.wait_for(lambda: len(env.find_events(S.ACTION_MEMBERS_COUNT)) == 2)
        counts = env.find_events(S.ACTION_MEMBERS_COUNT)
        assert [c.get("CC-Count") for c in counts] == ["1", "0"]
        row = env.core.rows("members")[0]
        assert row["state"] == S.MEMBER_ABANDONED and row["abandoned_epoch"] > 0
        assert env.core.queue_counters(Q) == (0, 1)
        # queue list members still shows it until discarded (§3.7)
        assert row["uuid"] in await env.cc(f"queue list members {Q}")
        await finish(env)


async def test_max_wait_time_cancels_with_timeout_and_the_dialplan_continues():
    async with open_callcenter(conf(queue(("max-wait-time", "1"), ("moh-sound", "local_stream://moh")))) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, after_socket=[("set", "after=yes"), ("park", "")]))
        t0 = trio.current_time()
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END, timeout=3)
        assert end.get("CC-Cancel-Reason") == S.CANCEL_TIMEOUT
        assert trio.current_time() - t0 <= 2.2
        ch = env.channel(rec.member_uuid)
        await env.wait_for(lambda: ch.vars.get("after") == "yes")
        assert ch.vars["cc_cause"] == "cancel" and ch.vars["cc_cancel_reason"] == S.CANCEL_TIMEOUT
        assert "cc_queue_canceled_epoch" in ch.vars and ch.alive and ch.current_app() is None
        env.hangup(rec.member_uuid)
        await finish(env)


async def test_max_wait_time_keeps_a_member_whose_agent_rings_and_bridges_it_when_answered():
    q = queue(("max-wait-time", "1"))
    profiles = {"slow": AgentProfile("slow", ring_time=1.6, talk_time=0.1)}
    async with open_callcenter(conf(q, agent("1000@default", "sim/agent/slow"), tier("1000@default")),
                               profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        with trio.fail_after(4):
            await rec.done.wait()
        assert rec.outcome == "bridged"
        await env.wait_event(S.ACTION_MEMBER_QUEUE_END, CC_Cause="Terminated")
        assert not env.find_events(S.ACTION_MEMBER_QUEUE_END, CC_Cause="Cancel")
        assert env.core.queue_counters(Q) == (1, 0)
        await finish(env)


async def test_max_wait_time_cuts_the_member_once_the_ring_that_outlived_it_fails():
    q = queue(("max-wait-time", "1"))
    # rings 1.5 s, then busy: the member must stay until then and leave right after
    profiles = {"busy": AgentProfile("busy", outcome="USER_BUSY", fail_time=1.5)}
    async with open_callcenter(conf(q, agent("1000@default", "sim/agent/busy", busy_delay_time="30"),
                                    tier("1000@default")), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        fail = await env.wait_event(S.ACTION_BRIDGE_AGENT_FAIL, timeout=3)
        assert not env.find_events(S.ACTION_MEMBER_QUEUE_END)  # not cut while ringing
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END, timeout=1.5)
        assert end.get("CC-Cancel-Reason") == S.CANCEL_TIMEOUT
        assert fail.get("CC-Hangup-Cause") == "USER_BUSY"
        assert env.actions().index(S.ACTION_BRIDGE_AGENT_FAIL) < env.actions().index(S.ACTION_MEMBER_QUEUE_END)
        with trio.fail_after(2):
            await rec.done.wait()
        await finish(env)


async def test_max_wait_time_with_no_agent_waits_for_the_time_reached_grace():
    # no agent ever seen since load: the member leaves at t_called + N + R (§3.4 2.)
    q = queue(("max-wait-time-with-no-agent", "1"), ("max-wait-time-with-no-agent-time-reached", "1"))
    async with open_callcenter(conf(q)) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        await env.wait_event(S.ACTION_MEMBER_QUEUE_START)
        t0 = env.service.clock.time()
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END, timeout=3.5)
        waited = env.service.clock.time() - t0
        assert end.get("CC-Cancel-Reason") == S.CANCEL_NO_AGENT_TIMEOUT
        joined = int(end.get("CC-Member-Joined-Time"))
        assert int(end.get("CC-Member-Leaving-Time")) - joined >= 2  # N + R
        assert waited >= 1.0
        with trio.fail_after(2):
            await rec.done.wait()
        await finish(env)


async def test_max_wait_time_with_no_agent_without_grace_leaves_at_once():
    q = queue(("max-wait-time-with-no-agent", "1"), ("max-wait-time-with-no-agent-time-reached", "0"))
    async with open_callcenter(conf(q)) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        await env.wait_event(S.ACTION_MEMBER_QUEUE_START)
        t0 = trio.current_time()
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END, timeout=2)
        assert end.get("CC-Cancel-Reason") == S.CANCEL_NO_AGENT_TIMEOUT
        assert trio.current_time() - t0 < 0.5
        with trio.fail_after(2):
            await rec.done.wait()
        await finish(env)


async def test_max_wait_time_with_no_agent_does_not_fire_while_an_agent_exists():
    q = queue(("max-wait-time-with-no-agent", "1"), ("max-wait-time-with-no-agent-time-reached", "0"))
    profiles = {"deaf": AgentProfile("deaf", outcome="no_answer")}
    async with open_callcenter(conf(q, agent("1000@default", "sim/agent/deaf"), tier("1000@default")),
                               profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        await trio.sleep(1.5)
        assert not env.find_events(S.ACTION_MEMBER_QUEUE_END)
        env.hangup_caller(rec)
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END)
        assert end.get("CC-Cancel-Reason") == S.CANCEL_BREAK_OUT
        await finish(env)


# -- abandoned rows: discard and resume (§3.7) -------------------------------------------------

async def test_abandoned_row_is_discarded_after_discard_abandoned_after():
    async with open_callcenter(conf(queue(("discard-abandoned-after", "1")))) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, patience=0.05))
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END)
        abandoned_at = int(end.get("CC-Member-Leaving-Time"))
        assert env.core.rows("members")[0]["state"] == S.MEMBER_ABANDONED
        await env.wait_for(lambda: env.core.rows("members") == [], timeout=3.5)
        # deleted at the first second where abandoned_epoch + discard < now, i.e. >= abandoned + 2
        assert env.service.clock.now() >= abandoned_at + 2
        assert rec.outcome == "abandoned"
        await finish(env)


async def test_resume_keeps_the_member_uuid_joined_epoch_and_place_in_line():
    q = queue(("abandoned-resume-allowed", "true"), ("discard-abandoned-after", "60"),
              ("moh-sound", "local_stream://moh"))
    a = agent("1000@default", "sim/agent/a1", status="On Break")
    profiles = {"a1": AgentProfile("a1", talk_time=0.05)}
    async with open_callcenter(conf(q, a, tier("1000@default")), profiles=profiles) as env:
        await env.watch_events()
        first = env.spawn(CallerSpec(queue=Q, cid_number="5551000"))
        start = await env.wait_event(S.ACTION_MEMBER_QUEUE_START)
        member_uuid = start.get("CC-Member-UUID")
        joined = env.core.rows("members")[0]["joined_epoch"]
        await trio.sleep(1.05)  # the resumed row must keep the older second
        other = env.spawn(CallerSpec(queue=Q, cid_number="5552000", cid_name="Bob"))
        await env.wait_for(lambda: len(env.find_events(S.ACTION_MEMBER_QUEUE_START)) == 2)
        env.hangup_caller(first)
        await env.wait_event(S.ACTION_MEMBER_QUEUE_END)
        again = env.spawn(CallerSpec(queue=Q, cid_number="5551000"))
        resume = await env.wait_event(S.ACTION_MEMBER_QUEUE_RESUME)
        assert resume.get("CC-Member-UUID") == member_uuid
        assert resume.get("CC-Member-Session-UUID") == again.member_uuid
        ch = env.channel(again.member_uuid)
        await env.wait_for(lambda: ch.vars.get("cc_member_uuid") == member_uuid)
        rows = {r["uuid"]: r for r in env.core.rows("members")}
        assert rows[member_uuid]["joined_epoch"] == joined
        assert rows[member_uuid]["state"] == S.MEMBER_WAITING
        assert rows[member_uuid]["session_uuid"] == again.member_uuid
        assert rows[member_uuid]["rejoined_epoch"] >= joined + 1
        # still first in line: the agent gets the resumed caller before the one who joined later
        assert await env.cc("agent set status 1000@default Available") == "+OK\n"
        offering = await env.wait_event(S.ACTION_AGENT_OFFERING)
        assert offering.get("CC-Member-UUID") == member_uuid
        with trio.fail_after(3):
            await again.done.wait()
        assert again.outcome == "bridged" and other.outcome == "active"
        await finish(env)


async def test_without_resume_allowed_the_same_caller_joins_fresh():
    async with open_callcenter(conf(queue())) as env:
        await env.watch_events()
        first = env.spawn(CallerSpec(queue=Q, patience=0.05))
        await env.wait_event(S.ACTION_MEMBER_QUEUE_END)
        second = env.spawn(CallerSpec(queue=Q))
        await env.wait_for(lambda: len(env.find_events(S.ACTION_MEMBER_QUEUE_START)) == 2)
        assert not env.find_events(S.ACTION_MEMBER_QUEUE_RESUME)
        uuids = [e.get("CC-Member-UUID") for e in env.find_events(S.ACTION_MEMBER_QUEUE_START)]
        assert uuids[0] != uuids[1]
        assert first.outcome == "abandoned"
        env.hangup_caller(second)
        await finish(env)


# -- after the queue -----------------------------------------------------------------------------

async def test_after_the_bridged_call_the_member_continues_in_the_dialplan_with_its_variables():
    profiles = {"a1": AgentProfile("a1", talk_time=0.2)}
    async with open_callcenter(conf(queue(("moh-sound", "local_stream://moh")),
                                    agent("1000@default", "sim/agent/a1"), tier("1000@default")),
                               profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, after_socket=[("set", "after=yes"), ("park", "")]))
        ch = env.channel(rec.member_uuid)
        await env.wait_for(lambda: ch.vars.get("after") == "yes", timeout=3)
        assert rec.bridged_at is not None and rec.continued_in_dialplan and ch.alive
        assert ch.vars["cc_cause"] == "answered"
        assert ch.vars["cc_agent"] == "1000@default"
        assert ch.vars["cc_agent_bridged"] == "true"
        assert "cc_agent_found" not in ch.vars  # unset when the app exits (§3.5 step 4)
        assert ch.vars["cc_agent_uuid"] == rec.agent_uuid
        assert int(ch.vars["cc_queue_answered_epoch"]) >= int(ch.vars["cc_queue_joined_epoch"])
        await env.wait_for(lambda: "cc_queue_terminated_epoch" in ch.vars)
        assert "cc_cancel_reason" not in ch.vars and "cc_queue_canceled_epoch" not in ch.vars
        assert env.core.queue_counters(Q) == (1, 0)
        await env.wait_event(S.ACTION_MEMBER_QUEUE_END, CC_Cause="Terminated")
        assert env.core.rows("members") == []
        env.hangup(rec.member_uuid)
        await finish(env)
