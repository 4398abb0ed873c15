"""The service's pure helpers: expansion, the originate string, event rendering, routing."""

from __future__ import annotations

import trio

from ccfast import strings as S
from ccfast.service.ccevents import render
from ccfast.service.expand import expand
from ccfast.service.originate import export_vars, originate_command, quote_value
from ccfast.service.router import ChannelRouter

MEMBER = {
    "Unique-ID": "m-1",
    "Caller-Caller-ID-Number": "5551000",
    "Caller-Caller-ID-Name": "Alice Smith",
    "Caller-RDNIS": "800",
    "variable_cc_queue": "support@default",
    "variable_cc_export_vars": "acct,nolocal:tag,missing",
    "variable_acct": "42,7",
    "variable_nolocal:tag": "vip",
    "Event-Name": "CHANNEL_DATA",
    "Core-UUID": "core",
}


def test_expand_uses_member_channel_and_passes_unknown_names_on():
    assert expand("user/${caller_id_number}@${cc_queue}", MEMBER) == "user/5551000@support@default"
    assert expand("${uuid}/${nope}", MEMBER) == "m-1/${nope}"
    assert expand("$${hold_music}", MEMBER) == "${hold_music}"


def test_quote_value_escapes_commas_and_quotes_spaces():
    assert quote_value("a,b") == "a\\,b"
    assert quote_value("Alice Smith") == "'Alice Smith'"
    assert quote_value("plain") == "plain"


def test_export_vars_copies_listed_existing_variables_and_strips_nolocal():
    assert export_vars(MEMBER) == {"cc_export_vars": "acct,nolocal:tag,missing", "acct": "42,7", "tag": "vip"}


def test_originate_command_has_reference_variables_and_contact_globals_last():
    cmd = originate_command(
        leg_uuid="leg-1", contact="{leg_timeout=5}user/${caller_id_number}", member=MEMBER,
        queue="support@default", joined_epoch=100, member_uuid="mu", member_session_uuid="m-1",
        agent="1000@default", agent_type="Callback", cid_name="Alice Smith", cid_number="5551000",
        originate_timeout=60,
    )
    assert cmd.endswith("}user/5551000 &park()")
    block = cmd[1:cmd.index("}")]
    for pair in ("origination_uuid=leg-1", "cc_queue=support@default", "cc_member_pre_answer_uuid=mu",
                 "cc_agent=1000@default", "cc_side=agent", "loopback_bowout=false",
                 "ignore_early_media=true", "originate_timeout=60",
                 "origination_caller_id_name='Alice Smith'", "acct=42\\,7", "tag=vip"):
        assert pair in block, pair
    assert block.endswith(",leg_timeout=5")


def test_render_omits_empty_values_drops_unique_id_and_adds_dnis():
    headers = {"CC-Queue": "q", "CC-Action": S.ACTION_AGENT_OFFERING, "CC-Agent": "a", "CC-Member-CID-Name": ""}
    out = render(S.ACTION_AGENT_OFFERING, headers, MEMBER)
    assert out == [("CC-Queue", "q"), ("CC-Action", "agent-offering"), ("CC-Agent", "a"), ("CC-Member-DNIS", "800")]
    start = render(S.ACTION_MEMBER_QUEUE_START, {"CC-Queue": "q", "CC-Action": "member-queue-start"}, MEMBER)
    names = [n for n, _ in start]
    assert "Unique-ID" not in names and "Event-Name" not in names and "Core-UUID" not in names
    assert names[-2:] == ["CC-Queue", "CC-Action"] and "Caller-Caller-ID-Number" in names


def test_router_delivers_only_to_watchers_of_that_uuid():
    router = ChannelRouter()
    got_a, got_b = [], []
    wa, wb = router.watch_cb("a", got_a.append), router.watch_cb("b", got_b.append)
    assert router.route("a", {"n": 1})
    assert not router.route("c", {"n": 2})
    assert got_a == [{"n": 1}] and got_b == []
    wa.close()
    wb.close()
    assert len(router) == 0


def test_quote_value_backslashes_and_quotes():
    assert quote_value("a\\b") == "a\\\\b"
    assert quote_value("it's") == "'it\\'s'"
    assert quote_value("tab\there") == "'tab\there'"


def test_callback_watches_can_close_themselves_while_routed():
    router = ChannelRouter()
    got = []
    first = router.watch_cb("u1", lambda ev: (got.append(("first", ev)), first.close()))
    router.watch_cb("u1", lambda ev: got.append(("second", ev)))
    assert router.route("u1", 1) and router.route("u1", 2)
    assert got == [("first", 1), ("second", 1), ("second", 2)]
    bad = router.watch_cb("u2", lambda ev: 1 / 0)  # a watcher's bug is logged, never raised
    assert router.route("u2", 3)
    bad.close()
    bad.close()  # idempotent
    assert not router.route("u2", 4)


class _FakeCore:
    def __init__(self):
        self.passes = 0

    def member_timeouts(self, now):
        return []

    def discard_abandoned(self, now):
        pass

    def dispatch(self, now):
        self.passes += 1
        return []

    def next_change(self, now):
        return None

    def drain_events(self):
        return []

    def drain_journal(self):
        return []


async def test_run_if_poked_runs_one_pass_and_the_loop_does_not_repeat_it():
    from ccfast.service.clock import Clock
    from ccfast.service.dispatcher import Dispatcher

    core = _FakeCore()
    d = Dispatcher(core, Clock(), start_offer=lambda o: None, member_timeout=lambda t: None, after_pass=lambda: None)
    async with trio.open_nursery() as n:
        await n.start(d.run)
        await trio.sleep(0.01)
        assert core.passes == 1  # the first pass
        d.run_if_poked()
        assert core.passes == 1  # not poked: nothing to do
        d.poke()
        d.run_if_poked()
        assert core.passes == 2  # ran at once
        await trio.sleep(0.05)
        assert core.passes == 2  # the loop woke, found the pass done, did not repeat it
        d.poke()
        await trio.sleep(0.05)
        assert core.passes == 3  # a poke nobody handled: the loop runs it
        n.cancel_scope.cancel()


async def test_oracle_cadence_ignores_run_if_poked():
    from ccfast.service.clock import Clock
    from ccfast.service.dispatcher import Dispatcher

    core = _FakeCore()
    d = Dispatcher(core, Clock(), start_offer=lambda o: None, member_timeout=lambda t: None, after_pass=lambda: None,
                   poll_interval=10.0)
    d.poke()
    d.run_if_poked()
    assert core.passes == 0


async def test_call_later_and_soon_run_in_order_and_cancel():
    from ccfast.service.app import Service

    class Settings:
        pass

    svc = Service(_FakeCore(), Settings())
    out = []
    async with trio.open_nursery() as n:
        await n.start(svc.run)
        svc.call_later(0.05, lambda: out.append("late"))
        svc.call_later(0.01, lambda: out.append("early"))
        cancelled = svc.call_later(0.02, lambda: out.append("cancelled"))
        cancelled.cancel()
        svc.call_later(0.03, lambda: 1 / 0)  # a failing timer is logged; the others still run
        svc.soon(lambda: out.append("soon-1"))
        svc.soon(lambda: out.append("soon-2"))
        assert out == []  # nothing runs inside the caller's step
        await trio.sleep(0.1)
        assert out == ["soon-1", "soon-2", "early", "late"]
        assert svc.stats.get("task_failures", 0) == 0
        n.cancel_scope.cancel()


class _RecordingConn:
    def __init__(self):
        self.posted, self.handler, self.closed, self.peer = [], None, False, "test"

    def post(self, command, on_reply=None):
        self.posted.append(command)

    def close(self):
        self.closed = True


async def test_a_redirected_caller_whose_queue_became_ours_joins_like_any_caller():
    """Cluster: no live owner appeared, but this node took the queue meanwhile: the caller gets the
    same join pipeline (resume, linger, myevents, the event filters, answer) as one that came
    straight here."""
    from ccfast.service.caller import MemberSession

    class Cluster:
        def owns(self, queue):
            return True

        async def redirect_address(self, queue):
            return None

    class Svc:
        cluster = Cluster()

        def resolve_queue(self, name):
            return object()

    direct, redirected = _RecordingConn(), _RecordingConn()
    MemberSession(Svc(), direct)._start_join(object())
    session = MemberSession(Svc(), redirected)
    await session._redirect("q")
    assert [c.encode() for c in redirected.posted] == [c.encode() for c in direct.posted]
    assert [c.encode() for c in direct.posted][-1].startswith(b"sendmsg") and len(direct.posted) == 8
    assert not redirected.closed
