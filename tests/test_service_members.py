"""Members (reference §3) end to end: a simulated caller runs ``socket`` to ccfast over real TCP.

Every behaviour of issue 4 §2 is checked through what the simulated FreeSWITCH box shows (channel
variables, applications run, api commands received) and through the ``callcenter::info`` events of
the control port. Whole-second rules (max-wait, discard) use 1-second values.
"""

from __future__ import annotations

import trio

from ccfast import strings as S
from ccfast.sim import AgentProfile, CallerSpec

from .e2e_harness import conf, open_callcenter

Q = "support@default"


def queue(*params: tuple[str, str], strategy: str = "longest-idle-agent", name: str = Q) -> str:
    body = "".join(f'<param name="{k}" value="{v}"/>' for k, v in params)
    return f'<queue name="{name}"><param name="strategy" value="{strategy}"/>{body}</queue>'


def agent(name: str, contact: str, status: str = "Available", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<agent name="{name}" type="callback" contact="{contact}" status="{status}"{extra}/>'


def tier(agent_name: str, level: int = 1, position: int = 1, queue_name: str = Q) -> str:
    return f'<tier agent="{agent_name}" queue="{queue_name}" level="{level}" position="{position}"/>'


async def finish(env) -> None:
    """Hang up whoever is still up, then the end-of-test invariants."""
    for ch in env.live_channels():
        if ch.role in ("caller", "agent"):
            env.sim.switch.hangup(ch, "NORMAL_CLEARING")
    await env.quiesce()
    env.check_invariants()


async def wait_playing(env, uuid: str, timeout: float = 3.0):
    """The application the member channel is running once it runs one."""
    ch = env.channel(uuid)
    await env.wait_for(lambda: ch.current_app() is not None, timeout)
    return ch.current_app()


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
