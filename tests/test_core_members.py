"""Member lifecycle in the core: join, resume, cancel, discard, watchdog timers (§3, §4.7)."""

from __future__ import annotations

from ccfast import strings as S
from ccfast.params import QueueParams
from tests.test_core_fixtures import T, actions, agent, agents_of, join, make, member, row, tier

B = T  # the worked examples' second 0


def timed_queue(**kw):
    return QueueParams(name="q", **kw)


# -- join / resume ---------------------------------------------------------------------------
def test_fresh_join_inserts_the_row_and_fires_start_and_count():
    core = make([timed_queue(time_base_score="system")], [], [])
    j = core.member_join("q", "m1", "chan-1", "5551000", "Bob", B - 7, 3, B)
    assert (j.member_uuid, j.resumed, j.joined_epoch) == ("m1", False, B)
    assert core.drain_journal() == [("members", "insert", ("m1",), {
        "queue": "q", "instance_id": S.SINGLE_BOX, "uuid": "m1", "session_uuid": "chan-1", "cid_number": "5551000",
        "cid_name": "Bob", "system_epoch": B - 7, "joined_epoch": B, "rejoined_epoch": 0, "bridge_epoch": 0,
        "abandoned_epoch": 0, "base_score": 3 + 7, "skill_score": 0, "serving_agent": "", "serving_system": "",
        "state": S.MEMBER_WAITING})]
    assert core.drain_events() == [
        (S.ACTION_MEMBER_QUEUE_START, {"CC-Queue": "q", "CC-Action": S.ACTION_MEMBER_QUEUE_START,
                                       "CC-Member-UUID": "m1", "CC-Member-Session-UUID": "chan-1",
                                       "CC-Member-CID-Name": "Bob", "CC-Member-CID-Number": "5551000"}),
        (S.ACTION_MEMBERS_COUNT, {"CC-Queue": "q", "CC-Action": S.ACTION_MEMBERS_COUNT, "CC-Count": "1",
                                  "CC-Selection": "Single-Queue"}),
    ]


def test_ring_queue_join_sets_the_marker_and_the_first_pass_makes_it_trying():
    core = make([("q", S.RING_ALL)])
    join(core, "q", "m1", B)
    assert row(core, "members", "m1")["serving_agent"] == S.RING_ALL
    assert row(core, "members", "m1")["state"] == S.MEMBER_WAITING
    core.dispatch(B)
    assert row(core, "members", "m1")["state"] == S.MEMBER_TRYING  # even with no agents


def test_resume_keeps_the_original_join_time_base_score_and_order():
    q = timed_queue(abandoned_resume_allowed=True, discard_abandoned_after=60)
    core = make([q], [agent("a", state=S.STATE_IDLE)], [tier("q", "a")])
    join(core, "q", "first", B, cid="100", base_score=4)
    join(core, "q", "other", B + 5, cid="200")
    core.member_cancel("first", S.CANCEL_BREAK_OUT, B + 10)
    core.drain_events()
    j = join(core, "q", "new-uuid", B + 20, cid="100")
    assert (j.member_uuid, j.resumed, j.joined_epoch) == ("first", True, B)
    r = row(core, "members", "first")
    assert (r["state"], r["joined_epoch"], r["rejoined_epoch"], r["base_score"], r["abandoned_epoch"]) == (
        S.MEMBER_WAITING, B, B + 20, 4, B + 10)
    assert [m["uuid"] for m in core.rows("members")] == ["first", "other"]  # creation order kept
    assert actions(core.drain_events()) == [S.ACTION_MEMBER_QUEUE_RESUME, S.ACTION_MEMBERS_COUNT]
    core.agent_set("state", "a", S.STATE_WAITING, B + 21)
    assert [o.member_uuid for o in core.dispatch(B + 21)] == ["first"]  # it outranks "other"


def test_resume_takes_the_most_recent_abandoned_row_and_needs_the_queue_to_allow_it():
    q = timed_queue(abandoned_resume_allowed=True)
    core = make([q, QueueParams(name="noresume")])
    join(core, "q", "old", B, cid="100")
    join(core, "q", "recent", B + 1, cid="100")
    core.member_cancel("old", S.CANCEL_BREAK_OUT, B + 10)
    core.member_cancel("recent", S.CANCEL_BREAK_OUT, B + 11)
    assert join(core, "q", "x", B + 20, cid="100").member_uuid == "recent"
    join(core, "noresume", "n1", B, cid="100")
    core.member_cancel("n1", S.CANCEL_BREAK_OUT, B + 1)
    j = join(core, "noresume", "n2", B + 2, cid="100")
    assert (j.member_uuid, j.resumed) == ("n2", False)


def test_abandoned_row_with_zero_abandoned_epoch_is_not_resumed():
    q = timed_queue(abandoned_resume_allowed=True)
    core = make([q], members=[member("q", "reset", B - 100, cid_number="100", state=S.MEMBER_ABANDONED,
                                     session_uuid="")])
    j = join(core, "q", "fresh", B, cid="100")
    assert (j.member_uuid, j.resumed) == ("fresh", False)


# -- discard (§3.7) --------------------------------------------------------------------------
def test_abandoned_rows_are_discarded_strictly_after_the_window():
    core = make([timed_queue(discard_abandoned_after=60)])
    join(core, "q", "m", B)
    core.member_cancel("m", S.CANCEL_BREAK_OUT, B + 10)
    assert core.next_change(B + 10) == B + 71
    assert core.discard_abandoned(B + 70) == []
    core.drain_journal()
    assert core.discard_abandoned(B + 71) == ["m"]
    assert core.drain_journal() == [("members", "delete", ("m",), {})]
    assert core.rows("members") == []


def test_discard_uses_joined_epoch_when_abandoned_epoch_is_zero():
    core = make([timed_queue(discard_abandoned_after=60)],
                members=[member("q", "m", B, state=S.MEMBER_ABANDONED, session_uuid="")])
    assert core.discard_abandoned(B + 60) == []
    core.dispatch(B + 61)  # a pass discards too
    assert core.rows("members") == []


# -- max-wait-time (§3.4 step 1) ---------------------------------------------------------------
def test_max_wait_time_ends_a_waiting_member():
    core = make([timed_queue(max_wait_time=30)])
    join(core, "q", "m", B)
    assert core.next_change(B) == B + 30
    assert core.member_timeouts(B + 29) == []
    out = core.member_timeouts(B + 30)
    assert [(t.member_uuid, t.queue, t.reason) for t in out] == [("m", "q", S.CANCEL_TIMEOUT)]
    assert core.member_timeouts(B + 31) == []  # reported once


def test_max_wait_time_never_cuts_a_ringing_agent():
    core = make([timed_queue(max_wait_time=30)], [agent("a")], [tier("q", "a")])
    join(core, "q", "m", B)
    offer = core.dispatch(B + 25)[0]
    assert core.member_timeouts(B + 30) == []
    assert core.member_timeouts(B + 44) == []
    core.offer_failed(offer.offer_id, S.HANGUP_NO_ANSWER, B + 45)
    assert [t.reason for t in core.member_timeouts(B + 45)] == [S.CANCEL_TIMEOUT]


def test_max_wait_time_member_answered_while_ringing_is_never_timed_out():
    core = make([timed_queue(max_wait_time=30)], [agent("a")], [tier("q", "a")])
    join(core, "q", "m", B)
    offer = core.dispatch(B + 25)[0]
    core.offer_answered(offer.offer_id, "leg", B + 40)
    assert core.member_timeouts(B + 40) == []  # connecting
    core.offer_bridged(offer.offer_id, B + 41)
    core.member_answered_exit("m")
    assert core.member_timeouts(B + 90) == []


# -- max-wait-time-with-no-agent (§3.4 step 2, §4.7) -------------------------------------------
def no_agent_core(N=10, R=5):
    # an On Break agent is a candidate row (the queue is "staffed") but is never offered
    q = timed_queue(max_wait_time_with_no_agent=N, max_wait_time_with_no_agent_time_reached=R)
    return make([q], [agent("a", status=S.STATUS_ON_BREAK)], [tier("q", "a")])


def test_no_agent_worked_example():
    core = no_agent_core()
    join(core, "q", "A", B + 995)
    core.dispatch(B + 995)
    core.agent_set("status", "a", S.STATUS_LOGGED_OUT, B + 1000)  # agents vanish at E = 1000
    assert core.queue_agent_exist("q")[0] == B + 1000
    join(core, "q", "Bm", B + 1008)
    assert core.next_change(B + 1008) == B + 1010
    assert core.member_timeouts(B + 1009) == []
    assert [(t.member_uuid, t.reason) for t in core.member_timeouts(B + 1010)] == [("A", S.CANCEL_NO_AGENT_TIMEOUT)]
    core.member_cancel("A", S.CANCEL_NO_AGENT_TIMEOUT, B + 1010)
    assert core.next_change(B + 1010) == B + 1023
    assert core.member_timeouts(B + 1022) == []
    assert [t.member_uuid for t in core.member_timeouts(B + 1023)] == ["Bm"]


def test_no_agent_ever_seen_leaves_at_join_plus_n_plus_r_or_at_once_with_r_zero():
    core = make([timed_queue(max_wait_time_with_no_agent=10, max_wait_time_with_no_agent_time_reached=5)])
    join(core, "q", "m", B)
    assert core.member_timeouts(B + 14) == []
    assert [t.reason for t in core.member_timeouts(B + 15)] == [S.CANCEL_NO_AGENT_TIMEOUT]
    core = make([timed_queue(max_wait_time_with_no_agent=10, max_wait_time_with_no_agent_time_reached=0)])
    join(core, "q", "m", B)
    assert [t.reason for t in core.member_timeouts(B)] == [S.CANCEL_NO_AGENT_TIMEOUT]


def test_busy_or_on_break_agents_keep_the_queue_staffed():
    core = no_agent_core()
    join(core, "q", "m", B)
    for s in range(0, 120, 7):
        assert core.member_timeouts(B + s) == []


# -- members-count -----------------------------------------------------------------------------
def test_members_count_counts_waiting_and_trying_rows_of_the_queue():
    core = make(["q", "r"], [agent("a")], [tier("q", "a")])
    join(core, "q", "m1", B)
    join(core, "r", "x", B)
    core.dispatch(B)  # m1 Trying
    core.drain_events()
    join(core, "q", "m2", B + 1)
    counts = [h["CC-Count"] for a, h in core.drain_events() if a == S.ACTION_MEMBERS_COUNT]
    assert counts == ["2"]
    assert core.member_count("q") == 2 and agents_of(core.live_offers()) == ["a"]


# -- §4.7 bookkeeping as the passes see it -----------------------------------------------------
def test_last_agent_exist_follows_the_passes():
    core = make(["q"], [agent("a", status=S.STATUS_ON_BREAK)], [tier("q", "a")])
    join(core, "q", "m", B)
    core.dispatch(B)
    assert core.queue_agent_exist("q") == (B, B)
    core.dispatch(B + 5)  # nothing changed in between: accounted lazily
    assert core.queue_agent_exist("q") == (B + 5, B + 5)
    core.agent_set("status", "a", S.STATUS_LOGGED_OUT, B + 7)
    core.dispatch(B + 9)
    assert core.queue_agent_exist("q") == (B + 7, B + 9)


def test_ring_progressively_gated_members_are_not_evaluated():
    q = QueueParams(name="q", strategy=S.RING_PROGRESSIVELY, ring_progressively_delay=10)
    core = make([q], [agent("a"), agent("b", status=S.STATUS_ON_BREAK)], [tier("q", "a"), tier("q", "b")])
    join(core, "q", "m", B)
    assert agents_of(core.dispatch(B)) == ["a"]
    core.dispatch(B + 3)  # the only member is held by the gate
    assert core.queue_agent_exist("q") == (B, B)
    core.dispatch(B + 10)
    assert core.queue_agent_exist("q") == (B + 10, B + 10)


def test_member_of_an_unloaded_queue_is_deleted_and_its_cancel_is_a_no_op():
    core = make(["q"])
    join(core, "q", "m", B)
    core.queue_remove("q")
    core.dispatch(B + 1)
    assert core.rows("members") == []
    core.drain_events()
    assert core.member_cancel("m", S.CANCEL_BREAK_OUT, B + 2) == []
    assert core.drain_events() == []


def test_member_summary_counts_rows_and_the_earliest_wait_like_the_rows():
    from ccfast.metrics import snapshot_from_rows

    from ccfast._core import Core
    from ccfast.params import QueueParams

    core = Core()
    core.queue_set(QueueParams(name="q"))
    core.queue_set(QueueParams(name="r"))
    core.member_join("q", "m1", "s1", "1", "a", 100, 0, 100)
    core.member_join("q", "m2", "s2", "2", "b", 105, 0, 105)
    core.member_join("r", "m3", "s3", "3", "c", 110, 0, 110)
    core.member_cancel("m3", "BREAK_OUT", 111)
    counts, starts = core.member_summary()
    assert counts[("q", "Waiting")] == 2 and starts == {"q": 100}
    params = [core.queue_params(n) for n in core.queue_names()]
    a = snapshot_from_rows(120.0, params, [], [], core.rows("members"))
    b = snapshot_from_rows(120.0, params, [], [], (), member_summary=(counts, starts))
    assert a.members == b.members and a.oldest_wait == b.oldest_wait
