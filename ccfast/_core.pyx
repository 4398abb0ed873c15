# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The dispatch core: all of mod_callcenter's dispatch state and decisions, pure and clock-injected.

Contract: docs/core-contract.md (API, tie-breaks) and the reference mod_callcenter.md (§ numbers
below). Every method that depends on time takes ``now`` (epoch seconds); nothing here reads a
clock, does I/O or awaits. Row changes are recorded in a journal (``drain_journal``) and CC events
in an event record (``drain_events``); the service carries them out.

Indexes (why a decision is O(log n + skipped)):
  * per queue, the *candidate* tiers (agent status exactly Available / On Break / On Demand, §4.3)
    in a sorted list keyed by the queue strategy's sort keys + agent name; union strategies
    (top-down, round-robin) find their part boundaries by bisection;
  * per queue, its dispatchable members sorted by the static part of the §4.1 score
    (joined_epoch - base_score - skill_score, seq): score DESC == that key ASC, whatever ``now``;
  * the set of agents that could take an offer (state Waiting, status Available/On Demand, no live
    offer). A pass only walks members of queues where such an agent has an offerable tier, merged in
    global score order, and stops walking a queue as soon as none is left for it; everything a
    pass does to the other members (no-agent bookkeeping, top-down wrap, ring Trying, strategy
    change tracking) is applied per queue without visiting each member.
"""

from bisect import bisect_left, bisect_right, insort
from heapq import heapify, heappop, heappush

from ccfast import strings as S
from ccfast.params import atoi

# ---------------------------------------------------------------------------------------------
# interned interface strings (from ccfast.strings)
cdef str SINGLE_BOX = S.SINGLE_BOX
cdef str ST_AVAILABLE = S.STATUS_AVAILABLE
cdef str ST_ON_DEMAND = S.STATUS_AVAILABLE_ON_DEMAND
cdef str ST_ON_BREAK = S.STATUS_ON_BREAK
cdef str ST_LOGGED_OUT = S.STATUS_LOGGED_OUT
cdef str AS_WAITING = S.STATE_WAITING
cdef str AS_RECEIVING = S.STATE_RECEIVING
cdef str AS_IN_CALL = S.STATE_IN_A_QUEUE_CALL
cdef str AS_IDLE = S.STATE_IDLE
cdef str AS_RESERVED = S.STATE_RESERVED
cdef str TS_READY = S.TIER_READY
cdef str TS_NO_ANSWER = S.TIER_NO_ANSWER
cdef str TS_OFFERING = S.TIER_OFFERING
cdef str TS_ACTIVE = S.TIER_ACTIVE_INBOUND
cdef str TS_STANDBY = S.TIER_STANDBY
cdef str MS_WAITING = S.MEMBER_WAITING
cdef str MS_TRYING = S.MEMBER_TRYING
cdef str MS_ANSWERED = S.MEMBER_ANSWERED
cdef str MS_ABANDONED = S.MEMBER_ABANDONED
cdef str RING_ALL = S.RING_ALL
cdef str RING_PROG = S.RING_PROGRESSIVELY
cdef str LOW_WAITING = S.STATE_WAITING.lower()
cdef str LOW_READY = S.TIER_READY.lower()
cdef str LOW_NO_ANSWER = S.TIER_NO_ANSWER.lower()
cdef str LOW_ON_BREAK = S.STATUS_ON_BREAK.lower()
cdef str LOW_SINGLE_BOX = S.SINGLE_BOX.lower()
cdef str LOW_ON_DEMAND = S.STATUS_AVAILABLE_ON_DEMAND.lower()
cdef str LOW_AVAILABLE = S.STATUS_AVAILABLE.lower()
cdef str LOW_RECEIVING = S.STATE_RECEIVING.lower()
cdef str LOW_UUID_STANDBY = S.TYPE_UUID_STANDBY.lower()
cdef tuple CANDIDATE = S.CANDIDATE_STATUSES
cdef str ACTION_STATE_CHANGE = S.ACTION_AGENT_STATE_CHANGE
cdef str ACTION_OFFERING = S.ACTION_AGENT_OFFERING
cdef tuple AGENT_INT_COLS = (
    "max_no_answer", "wrap_up_time", "reject_delay_time", "busy_delay_time", "no_answer_delay_time",
    "last_bridge_start", "last_bridge_end", "last_offered_call", "last_status_change",
    "no_answer_count", "calls_answered", "talk_time", "ready_time", "external_calls_count",
)
cdef frozenset _TRANSIENT_AGENT_STATES = frozenset(
    x.lower() for x in (S.STATE_RECEIVING, S.STATE_RESERVED, S.STATE_IN_A_QUEUE_CALL))
cdef frozenset _TRANSIENT_TIER_STATES = frozenset(
    x.lower() for x in (S.TIER_OFFERING, S.TIER_ACTIVE_INBOUND, S.TIER_STANDBY))
cdef frozenset _AGENT_COLSET = frozenset(S.AGENTS_COLUMNS)
cdef frozenset _TIER_COLSET = frozenset(S.TIERS_COLUMNS)
cdef tuple MEMBER_INT_COLS = (
    "system_epoch", "joined_epoch", "rejoined_epoch", "bridge_epoch", "abandoned_epoch",
    "base_score", "skill_score",
)

# strategy codes
cdef enum:
    K_LIA = 0
    K_RR = 1
    K_TD = 2
    K_LTT = 3
    K_FC = 4
    K_SEQ = 5
    K_RANDOM = 6
    K_RINGALL = 7
    K_RINGPROG = 8

cdef dict _STRATEGY_CODES = {
    S.LONGEST_IDLE_AGENT: K_LIA, S.ROUND_ROBIN: K_RR, S.TOP_DOWN: K_TD,
    S.AGENT_WITH_LEAST_TALK_TIME: K_LTT, S.AGENT_WITH_FEWEST_CALLS: K_FC,
    S.SEQUENTIALLY_BY_AGENT_ORDER: K_SEQ, S.RANDOM: K_RANDOM, S.RING_ALL: K_RINGALL,
    S.RING_PROGRESSIVELY: K_RINGPROG,
}

# what changed, for re-keying an agent's tiers
cdef enum:
    W_LOC = 1
    W_LBE = 2
    W_TALK = 4
    W_CALLS = 8
    W_ALL = 15

# offer phases
cdef enum:
    P_RINGING = 0
    P_ANSWERED = 1
    P_BRIDGED = 2
    P_DONE = 3

cdef inline str _low(object value):
    """C strcasecmp helper: lower-cased text, NULL as ''."""
    if value is None:
        return ""
    return (<str>value).lower()

cdef inline void _aflags(Agent a):
    """Refresh the agent's cached case-insensitive comparisons if a column changed."""
    if a.state is not a._c_state:
        a._c_state = a.state
        a.c_waiting = a.state == AS_WAITING or _low(a.state) == LOW_WAITING
    if a.status is not a._c_status:
        a._c_status = a.status
        a.c_on_break = a.status == ST_ON_BREAK or _low(a.status) == LOW_ON_BREAK
    if a.instance_id is not a._c_inst:
        a._c_inst = a.instance_id
        a.c_single_box = a.instance_id == SINGLE_BOX or _low(a.instance_id) == LOW_SINGLE_BOX


cdef inline bint _offerable(Tier t):
    """Tier state Ready or No Answer (case-insensitive, §4.5 step 4). Canonical spellings are
    interned on the way in, so the usual test is an identity check."""
    cdef object s = t.state
    cdef str ts
    if s is TS_READY or s is TS_NO_ANSWER:
        return True
    if s is TS_OFFERING or s is TS_STANDBY or s is TS_ACTIVE:
        return False
    ts = _low(s)
    return ts == LOW_READY or ts == LOW_NO_ANSWER


cdef dict _TIER_STATE_OBJ = {v: v for v in S.TIER_STATES}


cdef inline int _scode(object strategy):
    """The strategy as the C code compares it; unknown names fall back to sequential (§4.3)."""
    return _STRATEGY_CODES.get(_low(strategy), K_SEQ)

cdef inline str _s(object value):
    """Event header text: None stays None (the header is then omitted)."""
    if value is None:
        return None
    return str(value)


def _first(t):
    return t[0]


class CoreError(Exception):
    """An API-level refusal; ``str(exc)`` is the exact text after ``-ERR `` (§7.2)."""


# ---------------------------------------------------------------------------------------------
# rows


cdef class Agent:
    """One ``agents`` row plus the core's links (tiers by queue name, live offer)."""
    cdef public object name, instance_id, uuid, type, contact, status, state
    cdef public long long max_no_answer, wrap_up_time, reject_delay_time, busy_delay_time
    cdef public long long no_answer_delay_time, last_bridge_start, last_bridge_end
    cdef public long long last_offered_call, last_status_change, no_answer_count, calls_answered
    cdef public long long talk_time, ready_time, external_calls_count
    cdef public list tiers  # its Tier rows (1-5 typically: a list is smaller than a dict)
    cdef public Offer offer
    # C strcasecmp results cached per string object (the row keeps the string as typed)
    cdef object _c_state, _c_status, _c_inst
    # flags as bytes (bint is an int: 4 bytes each); the object stays in its allocator size class
    cdef unsigned char c_waiting, c_on_break, c_single_box
    cdef public unsigned char deleted, in_free, c_freeish
    # in_ready: in_free and past its wrap-up/ready_time as of Core._rnow; ok_at: the time of its
    # entry in Core._ok_heap (NO_ENTRY: none)
    cdef public unsigned char in_ready
    # held: another ccfast node holds this agent (agent_hold): not offerable here, row unchanged
    cdef public unsigned char held
    cdef public long long ok_at

    def row(self):
        return {
            "name": self.name, "instance_id": self.instance_id, "uuid": self.uuid, "type": self.type,
            "contact": self.contact, "status": self.status, "state": self.state,
            "max_no_answer": self.max_no_answer, "wrap_up_time": self.wrap_up_time,
            "reject_delay_time": self.reject_delay_time, "busy_delay_time": self.busy_delay_time,
            "no_answer_delay_time": self.no_answer_delay_time,
            "last_bridge_start": self.last_bridge_start, "last_bridge_end": self.last_bridge_end,
            "last_offered_call": self.last_offered_call, "last_status_change": self.last_status_change,
            "no_answer_count": self.no_answer_count, "calls_answered": self.calls_answered,
            "talk_time": self.talk_time, "ready_time": self.ready_time,
            "external_calls_count": self.external_calls_count,
        }


cdef class Tier:
    """One ``tiers`` row, and its own entry in its queue's candidate index: it sorts by the
    key (k0, k1, k2, agent name) it was inserted with (no separate key tuple, to save memory);
    a tuple probe (level,) / (level, position) compares as a prefix of that key."""
    cdef public object queue, agent_name, state
    cdef public int level, position
    cdef public Agent agent
    # key: in kq.idx; in_f: in kq.fidx; in_r: counted in kq.nready (bytes: keeps the object at 112 B)
    cdef public unsigned char key, in_f, in_r
    # sb: set Standby by its agent's live offer (offer_withdrawn puts back only those)
    cdef public unsigned char sb
    cdef public long long k0, k1, k2
    cdef public Queue kq  # the queue whose index holds this tier

    def __richcmp__(Tier self, other, int op):
        return _richcmp(_tier_cmp(self, other), op)

    def row(self):
        return {"queue": self.queue, "agent": self.agent_name, "state": self.state,
                "level": self.level, "position": self.position}


cdef class Member:
    """One ``members`` row plus what mod_callcenter keeps on the member channel and app."""
    cdef public object queue, instance_id, uuid, session_uuid, cid_number, cid_name
    cdef public object serving_agent, serving_system, state
    cdef public long long system_epoch, joined_epoch, rejoined_epoch, bridge_epoch
    cdef public long long abandoned_epoch, base_score, skill_score
    cdef public long long seq
    # channel variables (§8.3): top-down pointer, ring-progressively last offer, cc_agent_found
    cdef public long long td_level, td_pos, last_originated, td_skip
    cdef public bint has_loc, agent_found
    # member app (§3.3/§3.4): in the wait loop since t_called; a timeout was reported
    cdef public bint in_app, reported, deleted, counted
    cdef public long long t_called
    cdef public bint in_idx  # in mq.members, ordered by (mk0, seq): score DESC, seq ASC (§4.1)
    cdef public long long mk0
    cdef public object akey, tdkey, abkey
    cdef public Queue mq
    cdef public list offers

    def __richcmp__(Member self, other, int op):
        return _richcmp(_member_cmp(self, other), op)

    def row(self):
        return {
            "queue": self.queue, "instance_id": self.instance_id, "uuid": self.uuid,
            "session_uuid": self.session_uuid, "cid_number": self.cid_number, "cid_name": self.cid_name,
            "system_epoch": self.system_epoch, "joined_epoch": self.joined_epoch,
            "rejoined_epoch": self.rejoined_epoch, "bridge_epoch": self.bridge_epoch,
            "abandoned_epoch": self.abandoned_epoch, "base_score": self.base_score,
            "skill_score": self.skill_score, "serving_agent": self.serving_agent,
            "serving_system": self.serving_system, "state": self.state,
        }


cdef class Queue:
    """A loaded queue: params, in-memory counters (§2.3) and its indexes."""
    cdef public object params, name, strategy
    cdef public int code
    cdef public long long calls_answered, calls_abandoned, last_agent_exist, last_agent_exist_check
    cdef public list idx       # candidate tiers (Tier objects), sorted by their key
    cdef public list fidx      # the subset that could be offered (see Core._fsync), same order
    cdef public list members   # dispatchable members (Member objects), sorted by (mk0, seq)
    cdef public list inapp     # members in the wait loop: (t_called, seq, member), sorted
    cdef public list td_ptrs   # top-down members with a pointer: (level, position, seq, member)
    cdef public bint rr_valid
    cdef public long long rr_loc
    cdef public object rr_name
    cdef public long long hot, hot_pass
    cdef public long long bk_since  # passes up to this id are accounted in last_agent_exist*
    # params as C values (queue_set)
    cdef public bint tra, trm, trn, skip_ext, resume, tbs, timers
    cdef public long long trw, rp_delay, max_wait, na_n, na_r, discard_after
    cdef public bint tr_valid   # next_change's cached tier-rule crossing (tr_next, -1 = none)
    cdef public long long tr_next
    cdef public object no_answer_status  # canonical spelling, as cc_agent_str2status/status2str write it
    # incremental pass state: nready = agents that could be offered now (free, past wrap-up and
    # ready_time, offerable tier, not skipped for external calls): the pass's `hot` count
    cdef public long long nready, order
    cdef public bint removed, in_hot, in_app_qs
    cdef public bint suspended  # queue_suspend: no dispatch, no timers, rows kept as they are
    # next_change's cached per-queue earliest change (nc, -1 = none), computed at nc_at; nc_in:
    # the value of this queue's live entry in Core._nc_heap (-1 = none)
    cdef public bint nc_ok
    cdef public long long nc, nc_at, nc_in
    cdef public list joins  # tier-rules queues only: joined_epoch of each entry of members, sorted

    cdef inline bint ring(self):
        return self.code == K_RINGALL or self.code == K_RINGPROG


# ---------------------------------------------------------------------------------------------
# results handed to the service


cdef class Offer:
    """One agent leg to originate (§5.1 snapshot)."""
    cdef readonly long long offer_id, level, position, joined_epoch, created
    cdef readonly object queue, member_uuid, member_session_uuid, agent, agent_type, agent_contact
    cdef readonly object agent_uuid, agent_system, strategy, cid_number, cid_name
    cdef Member m
    cdef Agent a
    cdef object snap_status, no_answer_status
    cdef long long snap_nac, snap_max_no_answer, snap_reject, snap_busy, snap_noans
    cdef long long answered_time
    cdef object answered_uuid
    cdef int phase
    # what the offer changed, for offer_withdrawn: the agent's state before the offer (before a
    # reservation), its last_offered_call, the offering tier's state (the tiers it set Standby
    # carry Tier.sb), the member's ring-progressively / top-down channel variables
    cdef object prev_state, prev_tier_state
    cdef long long prev_loc, prev_lo, prev_td_level, prev_td_pos
    cdef bint prev_has_loc

    @property
    def phase_name(self):
        return ("ringing", "answered", "bridged", "done")[self.phase]

    def __repr__(self):
        return (f"Offer(#{self.offer_id} {self.queue} member={self.member_uuid} agent={self.agent} "
                f"level={self.level} position={self.position} {self.phase_name})")


cdef class Cancel:
    """A ringing agent leg to hang up with ``cause``."""
    cdef readonly long long offer_id
    cdef readonly object member_uuid, agent, cause

    def __init__(self, offer_id, member_uuid, agent, cause):
        self.offer_id = offer_id
        self.member_uuid = member_uuid
        self.agent = agent
        self.cause = cause

    def __repr__(self):
        return f"Cancel(#{self.offer_id} {self.member_uuid} {self.agent} {self.cause})"

    def __eq__(self, other):
        if not isinstance(other, Cancel):
            return NotImplemented
        return (self.offer_id, self.member_uuid, self.agent, self.cause) == (
            (<Cancel>other).offer_id, (<Cancel>other).member_uuid, (<Cancel>other).agent,
            (<Cancel>other).cause)


cdef class Timeout:
    """A member the watchdog (§3.4) ends: reason TIMEOUT or NO_AGENT_TIMEOUT."""
    cdef readonly object member_uuid, session_uuid, queue, reason

    def __init__(self, member_uuid, session_uuid, queue, reason):
        self.member_uuid = member_uuid
        self.session_uuid = session_uuid
        self.queue = queue
        self.reason = reason

    def __repr__(self):
        return f"Timeout({self.member_uuid} {self.queue} {self.reason})"


cdef class Join:
    """Result of ``member_join``."""
    cdef readonly object member_uuid
    cdef readonly bint resumed
    cdef readonly long long joined_epoch

    def __init__(self, member_uuid, resumed, joined_epoch):
        self.member_uuid = member_uuid
        self.resumed = resumed
        self.joined_epoch = joined_epoch

    def __repr__(self):
        return f"Join({self.member_uuid} resumed={self.resumed} joined={self.joined_epoch})"


cdef class Answer:
    """Result of ``offer_answered``: whether this leg won, and the other legs to hang up."""
    cdef readonly bint won
    cdef readonly list cancel

    def __init__(self, won, cancel):
        self.won = won
        self.cancel = cancel

    def __repr__(self):
        return f"Answer(won={self.won} cancel={self.cancel})"


cdef inline bint _richcmp(int c, int op):
    if op == 0:
        return c < 0
    if op == 1:
        return c <= 0
    if op == 2:
        return c == 0
    if op == 3:
        return c != 0
    if op == 4:
        return c > 0
    return c >= 0


cdef int _tier_cmp(Tier t, object other) except -2:
    cdef Tier o
    cdef tuple p
    cdef Py_ssize_t n
    if isinstance(other, Tier):
        o = <Tier>other
        if t.k0 != o.k0:
            return -1 if t.k0 < o.k0 else 1
        if t.k1 != o.k1:
            return -1 if t.k1 < o.k1 else 1
        if t.k2 != o.k2:
            return -1 if t.k2 < o.k2 else 1
        if t.agent_name == o.agent_name:
            return 0
        return -1 if t.agent_name < o.agent_name else 1
    p = <tuple>other
    n = len(p)
    if n >= 1 and t.k0 != p[0]:
        return -1 if t.k0 < p[0] else 1
    if n >= 2 and t.k1 != p[1]:
        return -1 if t.k1 < p[1] else 1
    if n >= 3 and t.k2 != p[2]:
        return -1 if t.k2 < p[2] else 1
    return 1  # longer than the probe prefix


cdef int _member_cmp(Member m, object other) except -2:
    cdef Member o = <Member>other
    if m.mk0 != o.mk0:
        return -1 if m.mk0 < o.mk0 else 1
    if m.seq != o.seq:
        return -1 if m.seq < o.seq else 1
    return 0


# C-level sorted-list helpers for the tier and member indexes (no Python rich comparisons)
cdef Py_ssize_t _tier_bisect(list lst, Tier t, Py_ssize_t lo=0) except -1:
    """First position whose entry is not less than t."""
    cdef Py_ssize_t hi = len(lst), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if _tier_cmp(<Tier>lst[mid], t) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef Py_ssize_t _tier_probe(list lst, long long k0, long long k1, bint has_k1, Py_ssize_t lo=0) except -1:
    """First position whose (k0[, k1]) is >= the probe."""
    cdef Py_ssize_t hi = len(lst), mid
    cdef Tier e
    while lo < hi:
        mid = (lo + hi) >> 1
        e = <Tier>lst[mid]
        if e.k0 < k0 or (has_k1 and e.k0 == k0 and e.k1 < k1):
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef void _tier_insert(list lst, Tier t) except *:
    lst.insert(_tier_bisect(lst, t), t)


cdef void _tier_remove(list lst, Tier t) except *:
    cdef Py_ssize_t i = _tier_bisect(lst, t), n = len(lst)
    while i < n and lst[i] is not t and _tier_cmp(<Tier>lst[i], t) == 0:
        i += 1
    if i < n and lst[i] is t:
        del lst[i]
        return
    for i in range(n):  # defensive: the key changed behind the index's back
        if lst[i] is t:
            del lst[i]
            return


cdef Py_ssize_t _member_bisect(list lst, Member m) except -1:
    cdef Py_ssize_t lo = 0, hi = len(lst), mid
    cdef Member e
    while lo < hi:
        mid = (lo + hi) >> 1
        e = <Member>lst[mid]
        if e.mk0 < m.mk0 or (e.mk0 == m.mk0 and e.seq < m.seq):
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef void _member_insert(list lst, Member m) except *:
    lst.insert(_member_bisect(lst, m), m)


cdef void _member_remove(list lst, Member m) except *:
    cdef Py_ssize_t i = _member_bisect(lst, m), n = len(lst)
    if i < n and lst[i] is m:
        del lst[i]
        return
    for i in range(n):
        if lst[i] is m:
            del lst[i]
            return


cdef struct Walk:
    long long tier
    long long count


cdef long long NO_ENTRY = -0x7fffffffffffffff  # Agent.ok_at: no entry in Core._ok_heap


# ---------------------------------------------------------------------------------------------


cdef class Core:
    """All dispatch state and decisions. See docs/core-contract.md for the API contract."""
    cdef readonly object instance_id
    cdef readonly bint reserve_agents
    cdef unsigned long long _rng
    cdef dict _queues, _agents, _tiers, _orphan_tiers, _members, _offers, _abandoned
    cdef set _free
    cdef list _journal, _events, _pending, _pending_next, _orphans, _discard_heap, _rp_heap
    cdef long long _seq, _offer_seq, _pass_id, _last_now, _pass_now
    cdef set _td_dirty
    cdef public long long n_walks, n_rows  # work counters (members walked, candidate rows seen)
    cdef bint _in_pass
    cdef list _deferred_members
    cdef set _deferred_agents
    cdef dict _count_wt
    # incremental pass state (see _ready_sync, _rtier, _hq, _ncd): free agents not yet past their
    # wrap-up/ready_time by the time they are, readiness evaluated at _rnow; queues worth a walk
    # (members and ready agents), queues with members in the wait loop; next_change's per-queue cache
    cdef list _ok_heap, _nc_heap
    cdef long long _okseq, _rnow, _ncseq, _nc_now, _qorder
    cdef set _hot_qs, _app_qs, _nc_dirty
    cdef bint _ref_scan  # _scan_next_change: compute tier-rule crossings by the member scan
    cdef set _holds       # agent names held by another node (agent_hold)
    # crash re-adoption (load_recovered): session uuid -> (Member, load time, window or -1,
    # abandoned_epoch and t_called before the crash); member uuid -> session uuid
    cdef dict _readopt, _readopt_m

    def __init__(self, instance_id=S.SINGLE_BOX, reserve_agents=False, seed=0):
        self.instance_id = instance_id
        self.reserve_agents = bool(reserve_agents)
        self._rng = (<unsigned long long>seed * 6364136223846793005ULL + 1442695040888963407ULL) or 88172645463325252ULL
        self._queues = {}
        self._agents = {}
        self._tiers = {}          # queue name -> [Tier] (every tiers row; a list is smaller than a dict)
        self._orphan_tiers = {}   # agent name -> {queue name: Tier} for tiers without an agent row
        self._members = {}        # uuid -> Member
        self._offers = {}         # offer id -> live Offer
        self._abandoned = {}      # (queue, cid_number) -> {seq: Member} Abandoned rows (resume)
        self._free = set()
        self._journal = []
        self._events = []
        self._pending = []        # members to normalise at the next pass (§4.2 steps 4, 6)
        self._pending_next = []
        self._orphans = []        # members whose queue is unknown (deleted by the next pass)
        self._discard_heap = []   # (due, seq, member)
        self._rp_heap = []        # (gate end, seq, member) ring-progressively
        self._seq = 0
        self._offer_seq = 0
        self._pass_id = 0
        self._pass_now = 0
        self._td_dirty = set()
        self._last_now = 0
        self._in_pass = False
        self._deferred_members = []
        self._deferred_agents = set()
        self._count_wt = {}
        self._ok_heap = []        # (time, push id, agent): when a free agent's wrap-up/ready_time is over
        self._okseq = 0
        self._rnow = NO_ENTRY     # readiness is evaluated at this second (dispatch/next_change `now`)
        self._hot_qs = set()      # queues with dispatchable members and nready > 0
        self._app_qs = set()      # queues with members in the timer index (inapp)
        self._nc_dirty = set()    # queues whose next_change cache must be recomputed
        self._nc_heap = []        # (time, push id, queue): per-queue next_change values
        self._ncseq = 0
        self._nc_now = NO_ENTRY
        self._qorder = 0
        self._holds = set()
        self._readopt = {}
        self._readopt_m = {}

    # =========================================================================================
    # small helpers: journal, events, rng

    cdef inline void _j(self, str table, str op, tuple key, dict cols):
        self._journal.append((table, op, key, cols))

    cdef void _ja(self, Agent a, dict cols):
        if not a.deleted:
            self._journal.append(("agents", "update", (a.name,), cols))

    cdef void _jt(self, Tier t, dict cols):
        self._journal.append(("tiers", "update", (t.queue, t.agent_name), cols))

    cdef void _jm(self, Member m, dict cols):
        if not m.deleted:
            self._journal.append(("members", "update", (m.uuid,), cols))

    cdef void _ev(self, str action, list pairs):
        """Record a CC event; headers with a NULL or empty value are omitted (§6.1)."""
        cdef dict headers = {}
        for name, value in pairs:
            if name == "CC-Action":
                headers[name] = action
            elif value is not None and value != "":
                headers[name] = str(value)
        self._events.append((action, headers))

    cdef void _state_ev(self, object agent, object state):
        """agent-state-change (the most frequent event), built without the generic helper."""
        cdef dict h = {}
        if agent:
            h["CC-Agent"] = agent
        h["CC-Action"] = ACTION_STATE_CHANGE
        if state:
            h["CC-Agent-State"] = state
        self._events.append((ACTION_STATE_CHANGE, h))

    cdef void _offering_ev(self, Queue q, Agent a, Member m):
        cdef dict h = {}
        cdef object v
        for name, v in (("CC-Queue", q.name), ("CC-Action", ACTION_OFFERING), ("CC-Agent", a.name),
                        ("CC-Agent-Type", a.type), ("CC-Agent-System", a.instance_id), ("CC-Member-UUID", m.uuid),
                        ("CC-Member-Session-UUID", m.session_uuid), ("CC-Member-CID-Name", m.cid_name),
                        ("CC-Member-CID-Number", m.cid_number)):
            if v:
                h[name] = v if type(v) is str else str(v)
        self._events.append((ACTION_OFFERING, h))

    cdef unsigned long long _rand(self):
        cdef unsigned long long x = self._rng
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        self._rng = x
        return x

    cdef void _touch(self, long long now):
        if now > self._last_now:
            self._last_now = now

    # =========================================================================================
    # incremental pass state: which queues a pass must walk, and next_change, without scans

    cdef void _ready_sync(self, Agent a):
        """Re-derive a.in_ready (free and past wrap-up/ready_time at _rnow); a free agent not yet
        ready gets an entry in _ok_heap for the second it becomes ready."""
        cdef long long t = a.last_bridge_end + a.wrap_up_time + 1  # wrap-up is strict (§4.5)
        cdef bint ready
        if a.ready_time > t:
            t = a.ready_time
        ready = a.in_free and t <= self._rnow
        if a.in_free and not ready and a.ok_at != t:
            a.ok_at = t
            self._okseq += 1
            heappush(self._ok_heap, (t, self._okseq, a))
        if ready != a.in_ready:
            a.in_ready = ready
            for x in a.tiers:
                self._rtier(<Tier>x)

    cdef void _advance(self, long long now):
        """Readiness as of `now`: agents whose wrap-up/ready_time ended by now become ready."""
        cdef long long t
        cdef Agent a
        if now == self._rnow:
            return
        if now < self._rnow:  # time went back (tests): re-evaluate every free agent
            self._rnow = now
            for x in list(self._free):
                self._ready_sync(<Agent>x)
            return
        self._rnow = now
        while self._ok_heap and self._ok_heap[0][0] <= now:
            t, _, x = heappop(self._ok_heap)
            a = <Agent>x
            if a.ok_at == t:
                a.ok_at = NO_ENTRY
                self._ready_sync(a)

    cdef void _rtier(self, Tier t):
        """Keep t counted in t.kq.nready iff its agent could be offered in t.kq right now (the
        conditions the pass used to test on every free agent, §4.5 step 4)."""
        cdef Agent a = t.agent
        cdef Queue q = t.kq
        cdef bint want = (q is not None and a is not None and a.in_ready and _offerable(t)
                          and not (q.skip_ext and a.external_calls_count > 0))
        if want == t.in_r:
            return
        t.in_r = want
        if want:
            q.nready += 1
            if q.nready == 1:
                self._hq(q)
        else:
            q.nready -= 1
            if q.nready == 0:
                self._hq(q)

    cdef inline void _rtier_off(self, Tier t):
        """t leaves t.kq (called before kq changes)."""
        if t.in_r:
            t.in_r = False
            t.kq.nready -= 1
            if t.kq.nready == 0:
                self._hq(t.kq)

    cdef void _hq(self, Queue q):
        """q is worth walking in a pass iff it has dispatchable members and a ready agent."""
        cdef bint want = not q.removed and not q.suspended and q.nready > 0 and len(q.members) > 0
        if want != q.in_hot:
            q.in_hot = want
            if want:
                self._hot_qs.add(q)
            else:
                self._hot_qs.discard(q)

    cdef void _aq(self, Queue q):
        """q has members in the timer index (member_timeouts visits only those queues)."""
        cdef bint want = not q.removed and not q.suspended and len(q.inapp) > 0
        if want != q.in_app_qs:
            q.in_app_qs = want
            if want:
                self._app_qs.add(q)
            else:
                self._app_qs.discard(q)

    cdef inline void _ncd(self, Queue q):
        """q's members, timer index, candidate levels or params changed: its next_change value
        is recomputed by the next next_change call."""
        if q.nc_ok:
            q.nc_ok = False
            self._nc_dirty.add(q)

    # =========================================================================================
    # index maintenance

    cdef void _tset_key(self, Tier t, Queue q):
        """The strategy's sort keys (§4.3); the agent name is the last tie-break."""
        cdef Agent a = t.agent
        cdef int code = q.code
        t.k0 = t.level
        if code == K_LIA:
            t.k1 = a.last_bridge_end
            t.k2 = t.position
        elif code == K_LTT:
            t.k1 = a.talk_time
            t.k2 = t.position
        elif code == K_FC:
            t.k1 = a.calls_answered
            t.k2 = t.position
        elif code == K_RINGALL or code == K_RINGPROG or code == K_RANDOM:
            t.k1 = t.position
            t.k2 = 0
        else:
            t.k1 = t.position
            t.k2 = a.last_offered_call

    cdef void _tindex(self, Tier t):
        """Put the tier in (or out of) its queue's candidate index with its current key."""
        cdef Queue q
        if self._in_pass and t.agent is not None:
            self._deferred_agents.add(t.agent)
            return
        if t.key:
            q = t.kq
            self._idx_changing(q)
            if t.in_f:
                _tier_remove(q.fidx, t)
                t.in_f = False
            _tier_remove(q.idx, t)
            t.key = False
            self._rtier_off(t)
            t.kq = None
        q = self._queues.get(t.queue)
        if q is None or t.agent is None or t.agent.deleted:
            return
        if t.agent.status not in CANDIDATE:
            return
        self._idx_changing(q)
        self._tset_key(t, q)
        t.key = True
        t.kq = q
        _tier_insert(q.idx, t)
        self._fsync(t)

    cdef inline void _idx_changing(self, Queue q):
        self._bk_pre(q)
        q.tr_valid = False
        self._ncd(q)
        if q.code == K_TD:
            self._td_dirty.add(q)

    cdef Tier _atier(self, Agent a, object queue):
        for t in a.tiers:
            if (<Tier>t).queue == queue:
                return <Tier>t
        return None

    cdef void _reindex_agent(self, Agent a, int what=W_ALL):
        """Re-key the agent's tiers whose queue sorts by a field in `what`."""
        cdef Tier t
        cdef int code
        for x in a.tiers:
            t = <Tier>x
            if what != W_ALL:
                if not t.key:
                    continue
                code = t.kq.code
                if code == K_LIA:
                    if not (what & W_LBE):
                        continue
                elif code == K_LTT:
                    if not (what & W_TALK):
                        continue
                elif code == K_FC:
                    if not (what & W_CALLS):
                        continue
                elif code == K_RINGALL or code == K_RINGPROG or code == K_RANDOM:
                    continue
                elif not (what & W_LOC):
                    continue
            self._tindex(t)

    cdef void _async(self, Agent a):
        """Keep the set of agents that could take an offer (time checks are done at the pass)."""
        _aflags(a)
        cdef bint free = (not a.deleted and a.offer is None and not a.held and a.c_waiting and a.c_single_box
                          and (a.status == ST_AVAILABLE or a.status == ST_ON_DEMAND))
        cdef bint freeish = (not a.deleted and a.offer is None and not a.held and a.c_waiting
                             and not a.c_on_break)
        if free and not a.in_free:
            self._free.add(a)
            a.in_free = True
        elif not free and a.in_free:
            self._free.discard(a)
            a.in_free = False
        self._ready_sync(a)
        if freeish != a.c_freeish:
            a.c_freeish = freeish
            for t in a.tiers:
                self._fsync(<Tier>t)

    cdef void _fsync(self, Tier t):
        """Keep q.fidx = the candidate rows whose tier state is offerable and whose agent is
        Waiting, not On Break and without a live offer. Without tier rules every other row only
        makes the walk continue (§4.5), so walking fidx gives the same outcome as walking idx."""
        cdef bint want
        self._rtier(t)
        if self._in_pass:
            if t.agent is not None:
                self._deferred_agents.add(t.agent)
            return
        want = t.key and t.agent is not None and t.agent.c_freeish and _offerable(t)
        if want == t.in_f:
            return
        if want:
            _tier_insert(t.kq.fidx, t)
        else:
            _tier_remove(t.kq.fidx, t)
        t.in_f = want

    cdef void _rr_update(self, Agent a):
        """The agent's last_offered_call changed: keep each queue's round-robin pointer cache."""
        cdef Queue q
        for t in a.tiers:
            q = (<Tier>t).kq if (<Tier>t).kq is not None else self._queues.get((<Tier>t).queue)
            if q is None or not q.rr_valid:
                continue
            if a.last_offered_call > q.rr_loc or (a.last_offered_call == q.rr_loc and q.rr_name is not None
                                                  and a.name < q.rr_name):
                q.rr_loc = a.last_offered_call
                q.rr_name = a.name
            elif a.name == q.rr_name:
                q.rr_valid = False

    cdef Tier _rr_pointer(self, Queue q):
        """§4.3 round-robin: the tier in Q of the agent with the largest last_offered_call > 0
        (ties: smallest name), any status."""
        cdef Tier t
        cdef Agent a
        cdef list tiers
        if not q.rr_valid:
            q.rr_loc = 0
            q.rr_name = None
            tiers = self._tiers.get(q.name)
            if tiers:
                for x in tiers:
                    t = <Tier>x
                    a = t.agent
                    if a is None or a.deleted:
                        continue
                    if a.last_offered_call > q.rr_loc or (a.last_offered_call == q.rr_loc and q.rr_name is not None
                                                          and a.name < q.rr_name):
                        if a.last_offered_call > 0:
                            q.rr_loc = a.last_offered_call
                            q.rr_name = a.name
            q.rr_valid = True
        if q.rr_name is None or q.rr_loc <= 0:
            return None
        return self._find_tier(q.name, q.rr_name)

    cdef Tier _find_tier(self, object queue, object agent_name):
        a = self._agents.get(agent_name)
        if a is not None:
            return self._atier(<Agent>a, queue)
        orphans = self._orphan_tiers.get(agent_name)
        return None if orphans is None else orphans.get(queue)

    cdef bint _selectable(self, Member m, Queue q):
        """Selected by the member query (§4.1): Waiting, or ring-marker Trying, on this box."""
        if q is None or m.deleted or m.instance_id != self.instance_id:
            return False
        if m.state == MS_WAITING:
            return True
        return m.state == MS_TRYING and (m.serving_agent == RING_ALL or m.serving_agent == RING_PROG)

    cdef void _msync(self, Member m):
        """Re-derive every index a member belongs to from its fields."""
        cdef Queue q = self._queues.get(m.queue)
        cdef bint sel = self._selectable(m, q)
        cdef bint counted = (not m.deleted) and (m.state == MS_WAITING or m.state == MS_TRYING)
        cdef tuple key
        cdef object ab
        if counted != m.counted:
            self._count_wt[m.queue] = self._count_wt.get(m.queue, 0) + (1 if counted else -1)
            m.counted = counted
        # dispatch order index
        if sel and not m.in_idx:
            self._bk_pre(q)
            q.tr_valid = False
            m.mk0 = m.joined_epoch - m.base_score - m.skill_score
            m.mq = q
            _member_insert(q.members, m)
            if q.joins is not None:
                insort(q.joins, m.joined_epoch)
            m.in_idx = True
            self._hq(q)
            self._ncd(q)
        elif not sel and m.in_idx:
            if self._in_pass:
                self._deferred_members.append((m.mq, m))
            else:
                self._bk_pre(m.mq)
                m.mq.tr_valid = False
                _member_remove(m.mq.members, m)
                self._joins_remove(m.mq, m)
                self._hq(m.mq)
                self._ncd(m.mq)
            m.in_idx = False
            m.mq = None
        # top-down pointers of dispatchable members
        if m.tdkey is not None:
            q2 = self._queues.get(m.queue)
            if q2 is not None:
                self._bk_pre(<Queue>q2)
                self._remove_sorted((<Queue>q2).td_ptrs, m.tdkey)
            m.tdkey = None
        if sel and q.code == K_TD and (m.td_level != 0 or m.td_pos != 0):
            self._bk_pre(q)
            m.tdkey = (m.td_level, m.td_pos, m.seq, m)
            insort(q.td_ptrs, m.tdkey)
            self._td_dirty.add(q)
        # member app timers (only queues with a timer keep this index)
        in_timers = (q is not None and q.timers and m.in_app and not m.reported and not m.deleted
                     and (m.state == MS_WAITING or m.state == MS_TRYING))
        if in_timers and m.akey is None:
            m.akey = (m.t_called, m.seq, m)
            insort(q.inapp, m.akey)
            self._aq(q)
            self._ncd(q)
        elif not in_timers and m.akey is not None:
            q3 = self._queues.get(m.queue)
            if q3 is not None:
                self._remove_sorted((<Queue>q3).inapp, m.akey)
                self._aq(<Queue>q3)
                self._ncd(<Queue>q3)
            m.akey = None
        # Abandoned rows: resume lookup and discard timer
        ab = (m.queue, m.cid_number) if (m.state == MS_ABANDONED and not m.deleted) else None
        if m.abkey is not None and m.abkey != ab:
            d = self._abandoned.get(m.abkey)
            if d is not None:
                d.pop(m.seq, None)
                if not d:
                    del self._abandoned[m.abkey]
            m.abkey = None
        if ab is not None and m.abkey is None:
            self._abandoned.setdefault(ab, {})[m.seq] = m
            m.abkey = ab
            if q is not None:
                heappush(self._discard_heap, (self._discard_due(m, q), m.seq, m))
        if q is None and not m.deleted and (sel or m.state == MS_ABANDONED or m.state == MS_WAITING
                                            or m.state == MS_TRYING):
            self._orphans.append(m)

    cdef void _joins_remove(self, Queue q, Member m):
        cdef Py_ssize_t i
        if q.joins is not None:
            i = bisect_left(q.joins, m.joined_epoch)
            if i < len(q.joins) and q.joins[i] == m.joined_epoch:
                del q.joins[i]
            else:  # defensive: out of step, rebuild
                q.joins = sorted([(<Member>e).joined_epoch for e in q.members])

    cdef void _remove_sorted(self, list lst, object key):
        cdef Py_ssize_t i = bisect_left(lst, key)
        if i < len(lst) and lst[i] is key:
            del lst[i]
        else:
            try:
                lst.remove(key)
            except ValueError:
                pass

    cdef long long _discard_due(self, Member m, Queue q):
        cdef long long epoch = m.abandoned_epoch if m.abandoned_epoch else m.joined_epoch
        cdef long long due = epoch + q.discard_after + 1, u
        if self._readopt_m:  # a re-adoptable row is kept until its window is over
            session = self._readopt_m.get(m.uuid)
            if session is not None:
                u = self._readopt_until(<tuple>self._readopt[session], q) + 1
                if u > due:
                    due = u
        return due

    cdef inline bint _q_suspended(self, object name):
        q = self._queues.get(name)
        return q is not None and (<Queue>q).suspended

    cdef void _set_mstate(self, Member m, object state, dict cols):
        m.state = state
        cols["state"] = state

    # =========================================================================================
    # queues

    def queue_set(self, params):
        """Add or replace a queue (like `queue load`/`reload`: in-memory counters restart at 0).
        Members are kept; a strategy change is tracked on the next pass (§4.2 step 4)."""
        cdef Queue q = self._queues.get(params.name)
        cdef Member m
        cdef Tier t
        if q is None:
            q = Queue()
            q.name = params.name
            q.idx = []
            q.fidx = []
            q.members = []
            q.inapp = []
            q.td_ptrs = []
            self._qorder += 1
            q.order = self._qorder  # dict order of self._queues (member_timeouts reports in it)
            self._queues[params.name] = q
        q.params = params
        q.strategy = params.strategy
        q.code = _scode(params.strategy)
        q.tra = bool(params.tier_rules_apply)
        q.trw = params.tier_rule_wait_second
        q.trm = bool(params.tier_rule_wait_multiply_level)
        q.trn = bool(params.tier_rule_no_agent_no_wait)
        q.skip_ext = bool(params.skip_agents_with_external_calls)
        q.resume = bool(params.abandoned_resume_allowed)
        q.tbs = bool(params.time_base_system)
        q.rp_delay = params.ring_progressively_delay or 10  # 0 means 10 s (§2.3)
        q.max_wait = params.max_wait_time
        q.na_n = params.max_wait_time_with_no_agent
        q.na_r = params.max_wait_time_with_no_agent_time_reached
        q.discard_after = params.discard_abandoned_after
        q.timers = q.max_wait > 0 or q.na_n > 0
        q.tr_valid = False
        q.no_answer_status = S.canonical(params.agent_no_answer_status or "", S.AGENT_STATUSES)
        q.calls_answered = 0
        q.calls_abandoned = 0
        q.last_agent_exist = 0
        q.last_agent_exist_check = 0
        q.bk_since = self._pass_id
        q.rr_valid = False
        self._td_dirty.add(q)
        # rebuild the candidate index for the (possibly new) strategy
        for entry in q.idx:
            (<Tier>entry).key = False
            (<Tier>entry).in_f = False
            (<Tier>entry).in_r = False
            (<Tier>entry).kq = None
        q.idx = []
        q.fidx = []
        q.nready = 0
        self._hq(q)
        q.nc_ok = False
        self._nc_dirty.add(q)
        tiers = self._tiers.get(params.name)
        if tiers:
            for t in tiers:
                self._tindex(t)
        for m in list(self._members.values()):
            if m.queue == params.name:
                if m.akey is not None:
                    self._remove_sorted(q.inapp, m.akey)
                    m.akey = None
                self._msync(m)
                if m.state == MS_WAITING or m.state == MS_TRYING:
                    self._pending.append(m)
                if m.state == MS_ABANDONED:
                    heappush(self._discard_heap, (self._discard_due(m, q), m.seq, m))
                if m.has_loc:
                    heappush(self._rp_heap, (m.last_originated + self._rp_delay(q), m.seq, m))
        q.joins = sorted([(<Member>e).joined_epoch for e in q.members]) if q.tra else None
        self._aq(q)

    def queue_remove(self, name):
        """Unload a queue. Its Waiting/Abandoned/ring rows are deleted by the next pass (§4.2 step 1)."""
        cdef Queue q = self._queues.pop(name, None)
        cdef Member m
        if q is None:
            return
        self._td_dirty.discard(q)
        q.removed = True
        for entry in q.idx:
            (<Tier>entry).key = False
            (<Tier>entry).in_f = False
            (<Tier>entry).in_r = False
            (<Tier>entry).kq = None
        q.idx = []
        q.fidx = []
        q.nready = 0
        for m in list(self._members.values()):
            if m.queue == name:
                if m.in_idx:
                    m.in_idx = False
                    m.mq = None
                m.tdkey = None
                m.akey = None
                self._msync(m)
        q.members = []
        q.joins = None
        q.td_ptrs = []
        q.inapp = []
        self._hq(q)
        self._aq(q)
        self._nc_dirty.discard(q)

    def queue_params(self, name):
        cdef Queue q = self._queues.get(name)
        return None if q is None else q.params

    def queue_names(self):
        return sorted(self._queues)

    def queue_counters(self, name):
        """(calls_answered, calls_abandoned) of a loaded queue."""
        cdef Queue q = self._queues.get(name)
        if q is None:
            raise CoreError("Queue not found!")
        return (q.calls_answered, q.calls_abandoned)

    def queue_agent_exist(self, name):
        """(last_agent_exist, last_agent_exist_check) of §4.7 as of the latest pass."""
        cdef Queue q = self._queues.get(name)
        if q is None:
            raise CoreError("Queue not found!")
        self._bk_pre(q)
        return (q.last_agent_exist, q.last_agent_exist_check)

    # =========================================================================================
    # rows in / out

    def load_rows(self, table, rows):
        """Append rows as given (restart recovery, tests); missing columns take the DDL default.
        Nothing is journaled. Duplicate agent names, tier pairs or member uuids are refused."""
        cols = S.TABLE_COLUMNS.get(table)
        if cols is None:
            raise ValueError(f"unknown table {table!r}; expected one of {', '.join(S.TABLE_COLUMNS)}")
        for row in rows:
            unknown = set(row) - set(cols)
            if unknown:
                raise ValueError(f"unknown column(s) for {table}: {', '.join(sorted(unknown))}")
            if table == "agents":
                self._load_agent(row)
            elif table == "tiers":
                self._load_tier(row)
            else:
                self._load_member(row)

    cdef Agent _new_agent(self, object name):
        cdef Agent a = Agent()
        a.name = name
        a.tiers = []
        a.ok_at = NO_ENTRY
        return a

    cdef void _attach_agent(self, Agent a):
        cdef Tier t
        self._agents[a.name] = a
        orphans = self._orphan_tiers.pop(a.name, None)
        if orphans:
            for t in orphans.values():
                t.agent = a
                t.agent_name = a.name
                a.tiers.append(t)
                self._tindex(t)
                q = self._queues.get(t.queue)
                if q is not None:
                    (<Queue>q).rr_valid = False
        a.held = a.name in self._holds
        self._async(a)

    cdef void _load_agent(self, dict row):
        name = row.get("name")
        if name in self._agents:
            raise ValueError(f"duplicate agent {name!r}")
        cdef Agent a = self._new_agent(name)
        a.instance_id = row.get("instance_id")
        a.uuid = row.get("uuid")
        a.type = row.get("type")
        a.contact = row.get("contact")
        a.status = row.get("status")
        a.state = row.get("state")
        for c in AGENT_INT_COLS:
            setattr(a, c, int(row.get(c) or 0))
        self._attach_agent(a)

    cdef void _load_tier(self, dict row):
        cdef Tier t = Tier()
        t.queue = row.get("queue")
        t.agent_name = row.get("agent")
        t.state = _TIER_STATE_OBJ.get(row.get("state"), row.get("state"))
        t.level = int(row.get("level", 1) if row.get("level") is not None else 1)
        t.position = int(row.get("position", 1) if row.get("position") is not None else 1)
        self._add_tier(t)

    cdef void _add_tier(self, Tier t):
        if self._find_tier(t.queue, t.agent_name) is not None:
            raise ValueError(f"duplicate tier {t.queue!r}/{t.agent_name!r}")
        self._tiers.setdefault(t.queue, []).append(t)
        cdef Agent a = self._agents.get(t.agent_name)
        if a is None:
            self._orphan_tiers.setdefault(t.agent_name, {})[t.queue] = t
        else:
            t.agent = a
            t.agent_name = a.name  # share the string
            a.tiers.append(t)
            self._tindex(t)
        q = self._queues.get(t.queue)
        if q is not None:
            t.queue = (<Queue>q).name
        if q is not None:
            (<Queue>q).rr_valid = False

    cdef void _load_member(self, dict row):
        uuid = row.get("uuid", "")
        if uuid in self._members:
            raise ValueError(f"duplicate member uuid {uuid!r}")
        cdef Member m = Member()
        m.queue = row.get("queue")
        m.instance_id = row.get("instance_id")
        m.uuid = uuid
        m.session_uuid = row.get("session_uuid", "")
        m.cid_number = row.get("cid_number")
        m.cid_name = row.get("cid_name")
        for c in MEMBER_INT_COLS:
            setattr(m, c, int(row.get(c) or 0))
        m.serving_agent = row.get("serving_agent")
        m.serving_system = row.get("serving_system")
        m.state = row.get("state")
        self._seq += 1
        m.seq = self._seq
        m.offers = []
        # a re-adopted waiting member is in the wait loop since it (re)joined
        m.in_app = m.state == MS_WAITING or m.state == MS_TRYING
        m.t_called = m.rejoined_epoch or m.joined_epoch
        self._members[uuid] = m
        self._msync(m)
        if m.state == MS_WAITING or m.state == MS_TRYING:
            self._pending.append(m)

    def load_recovered(self, rows, long long now, readopt_window=None, reset_agents=True):
        """Load the rows a crashed ccfast left (``{table: rows}``) and return them to definite
        states; the changes are journaled as updates (the loading itself is not), no events.

        * agents with instance_id ``single_box`` (when ``reset_agents``; a cluster node passes
          False, other nodes may be using them): state Receiving / Reserved / In a queue call
          (case-insensitive) -> Waiting, with uuid '' unless the type is uuid-standby;
          external_calls_count -> 0 (the tracked channels' hangups were lost), as §1.5;
        * their tiers: Offering / Active Inbound / Standby -> Ready;
        * members of this instance: Waiting/Trying -> Abandoned, session_uuid '', abandoned_epoch =
          ``now`` (so discard-abandoned-after counts from the restart); any other non-Abandoned row
          (Answered: the bridged call goes on without us) -> Abandoned, session_uuid '' with
          abandoned_epoch untouched, exactly as §1.5. Rows of other instances are loaded as given.

        A Waiting/Trying member with a session uuid is kept re-adoptable for ``readopt_window``
        seconds after ``now`` (None: its queue's discard-abandoned-after): ``member_join`` with
        that session uuid in the same queue resumes the row (see member_join) even where
        abandoned-resume-allowed is false. Its discard waits for the window. Returns counts:
        agents_reset, tiers_reset, readopt, abandoned."""
        cdef dict out = {"agents_reset": 0, "tiers_reset": 0, "readopt": 0, "abandoned": 0}
        cdef list journal = []
        cdef list cands = []
        cdef Member m
        cdef long long window = -1
        cdef dict ch
        self._touch(now)
        if readopt_window is not None:
            window = int(readopt_window)
            if window < 0:
                raise ValueError(f"readopt_window must be >= 0, got {readopt_window!r}")
        for table in rows:
            if table not in S.TABLE_COLUMNS:
                raise ValueError(f"unknown table {table!r}; expected one of {', '.join(S.TABLE_COLUMNS)}")
        agents = [dict(r) for r in (rows.get("agents") or ())]
        tiers = [dict(r) for r in (rows.get("tiers") or ())]
        members = [dict(r) for r in (rows.get("members") or ())]
        reset = set()
        seen = set()
        if reset_agents:
            for r in agents:
                if r.get("instance_id") != SINGLE_BOX:  # §1.5 matches the literal
                    continue
                reset.add(r.get("name"))
                ch = {}
                if _low(r.get("state")) in _TRANSIENT_AGENT_STATES:
                    ch["state"] = AS_WAITING
                    if _low(r.get("type")) != LOW_UUID_STANDBY and r.get("uuid"):
                        ch["uuid"] = ""
                if int(r.get("external_calls_count") or 0) != 0:
                    ch["external_calls_count"] = 0
                if ch:
                    r.update(ch)
                    journal.append(("agents", "update", (r.get("name"),), ch))
                    out["agents_reset"] += 1
            for r in tiers:
                if r.get("agent") in reset and _low(r.get("state")) in _TRANSIENT_TIER_STATES:
                    r["state"] = TS_READY
                    journal.append(("tiers", "update", (r.get("queue"), r.get("agent")), {"state": TS_READY}))
                    out["tiers_reset"] += 1
        for r in members:
            if r.get("instance_id") != self.instance_id:
                continue
            state = r.get("state")
            session = r.get("session_uuid") or ""
            if state == MS_WAITING or state == MS_TRYING:
                ch = {"state": MS_ABANDONED, "session_uuid": "", "abandoned_epoch": now}
                if session and session not in self._readopt and session not in seen:
                    seen.add(session)  # (two rows with one channel: the first is re-adoptable)
                    cands.append((r.get("uuid", ""), session, int(r.get("abandoned_epoch") or 0),
                                  int(r.get("rejoined_epoch") or 0) or int(r.get("joined_epoch") or 0)))
            elif state != MS_ABANDONED or session:
                ch = {"state": MS_ABANDONED, "session_uuid": ""}
            else:
                continue
            r.update(ch)
            journal.append(("members", "update", (r.get("uuid", ""),), ch))
            out["abandoned"] += 1
        self.load_rows("agents", agents)
        self.load_rows("tiers", tiers)
        self.load_rows("members", members)
        for uuid, session, ab, t_called in cands:
            m = <Member>self._members[uuid]
            self._readopt[session] = (m, now, window, ab, t_called)
            self._readopt_m[uuid] = session
            q = self._queues.get(m.queue)
            if q is not None:  # its discard waits for the window
                heappush(self._discard_heap, (self._discard_due(m, <Queue>q), m.seq, m))
            out["readopt"] += 1
        self._journal.extend(journal)
        return out

    cdef long long _readopt_until(self, tuple e, Queue q):
        """The last second a re-adoptable member's channel may come back."""
        return <long long>e[1] + (<long long>e[2] if <long long>e[2] >= 0 else q.discard_after)

    cdef void _readopt_drop(self, object uuid):
        session = self._readopt_m.pop(uuid, None)
        if session is not None:
            self._readopt.pop(session, None)

    def readopt_sessions(self, long long now):
        """{session uuid: member uuid} of the rows still waiting for their channel at ``now``
        (the service may check these channels on the boxes and forget the ones that are gone)."""
        out = {}
        for session, e in self._readopt.items():
            m = <Member>e[0]
            q = self._queues.get(m.queue)
            if (not m.deleted and m.state == MS_ABANDONED
                    and (q is None or now <= self._readopt_until(<tuple>e, <Queue>q))):
                out[session] = m.uuid
        return out

    def readopt_forget(self, session_uuid):
        """The channel is known gone: stop waiting for it (the row stays Abandoned and is
        discarded by discard-abandoned-after from the restart). Returns whether it was waited for."""
        cdef Member m
        e = self._readopt.get(session_uuid)
        if e is None:
            return False
        m = <Member>e[0]
        self._readopt_drop(m.uuid)
        q = self._queues.get(m.queue)
        if q is not None and not m.deleted and m.state == MS_ABANDONED:
            heappush(self._discard_heap, (self._discard_due(m, <Queue>q), m.seq, m))
        return True

    def rows(self, table):
        """All rows as dicts: agents by name, tiers by (queue, agent), members by creation order."""
        if table == "agents":
            return [(<Agent>self._agents[n]).row() for n in sorted(self._agents)]
        if table == "tiers":
            out = []
            for tiers in self._tiers.values():
                for t in tiers:
                    out.append((<Tier>t).row())
            out.sort(key=lambda r: (r["queue"] is not None, r["queue"] or "", r["agent"] is not None, r["agent"] or ""))
            return out
        if table == "members":
            return [(<Member>m).row() for m in sorted(self._members.values(), key=lambda x: (<Member>x).seq)]
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(S.TABLE_COLUMNS)}")

    # =========================================================================================
    # callcenter_config agent / tier commands (§7.2)

    cdef Agent _agent(self, object name):
        a = self._agents.get(name)
        if a is None:
            raise CoreError("Agent not found!")
        return <Agent>a

    def agent_add(self, name, type, now):
        """`agent add`: status Logged Out, state Waiting, instance single_box; event agent-add."""
        self._touch(now)
        if name in self._agents:
            raise CoreError("Agent already exist!")
        if S.canonical(type or "", S.AGENT_TYPES) is None:
            raise CoreError("Agent type invalid!")
        cdef Agent a = self._new_agent(name)
        a.instance_id = SINGLE_BOX
        a.type = type
        a.status = ST_LOGGED_OUT
        a.state = AS_WAITING
        self._attach_agent(a)
        self._j("agents", "insert", (name,), a.row())
        self._ev(S.ACTION_AGENT_ADD, [("CC-Agent", name), ("CC-Agent-Type", type), ("CC-Action", None)])

    def agent_del(self, name):
        """`agent del`: delete the agent row and all its tiers (no existence check, no event)."""
        self._agent_del(name, True)

    cdef void _agent_del(self, object name, bint journal):
        cdef Agent a = self._agents.pop(name, None)
        cdef Tier t
        if a is not None:
            self._bookkeep_queues(a, self._last_now)
            a.deleted = True
            self._async(a)
            for t in list(a.tiers):
                self._drop_tier(t, journal)
            if journal:
                self._j("agents", "delete", (name,), {})
        orphans = self._orphan_tiers.pop(name, None)
        if orphans:
            for t in list(orphans.values()):
                self._drop_tier(t, journal)

    cdef void _drop_tier(self, Tier t, bint journal=True):
        cdef Queue q
        if t.key:
            q = t.kq
            self._idx_changing(q)
            if t.in_f:
                _tier_remove(q.fidx, t)
                t.in_f = False
            _tier_remove(q.idx, t)
            t.key = False
            self._rtier_off(t)
            t.kq = None
        tiers = self._tiers.get(t.queue)
        if tiers is not None:
            for i in range(len(tiers)):
                if tiers[i] is t:
                    del tiers[i]
                    break
            if not tiers:
                del self._tiers[t.queue]
        if t.agent is not None:
            for i in range(len(t.agent.tiers)):
                if t.agent.tiers[i] is t:  # identity: tiers compare by index key
                    del t.agent.tiers[i]
                    break
        orphans = self._orphan_tiers.get(t.agent_name)
        if orphans is not None and orphans.get(t.queue) is t:
            del orphans[t.queue]
            if not orphans:
                del self._orphan_tiers[t.agent_name]
        q2 = self._queues.get(t.queue)
        if q2 is not None:
            (<Queue>q2).rr_valid = False
        if journal:
            self._j("tiers", "delete", (t.queue, t.agent_name), {})

    def agent_set(self, key, name, value, now):
        """`agent set <key> <name> <value>` with the module's checks, side effects and events.
        Returns the ringing legs to hang up (status changes, §5.10)."""
        self._touch(now)
        cdef Agent a = self._agent(name)
        cdef str k = _low(key)
        cdef long long n
        if k == "status":
            if S.canonical(value or "", S.AGENT_STATUSES) is None:
                raise CoreError("Invalid Agent Status!")
            return self._set_status(a, value, now)
        if k == "state":
            if S.canonical(value or "", S.AGENT_STATES) is None:
                raise CoreError("Invalid Agent State!")
            self._set_state(a, value, now, _low(value) == LOW_RECEIVING)
            return []
        if k == "state_if_waiting":
            if S.canonical(value or "", S.AGENT_STATES) is None:
                raise CoreError("Invalid Agent State!")
            if not (a.state == AS_WAITING and (a.status == ST_AVAILABLE or a.status == ST_ON_DEMAND)):
                raise CoreError("Agent not found!")
            self._set_state(a, value, now, False)
            return []
        if k == "uuid":
            a.uuid = value
            a.instance_id = SINGLE_BOX
            self._ja(a, {"uuid": value, "instance_id": SINGLE_BOX})
            self._async(a)
            return []
        if k == "contact":
            a.contact = value
            a.instance_id = SINGLE_BOX
            self._ja(a, {"contact": value, "instance_id": SINGLE_BOX})
            self._async(a)
            self._ev(S.ACTION_AGENT_CONTACT_CHANGE,
                     [("CC-Agent", name), ("CC-Action", None), ("CC-Agent-Contact", value)])
            return []
        if k in ("ready_time", "busy_delay_time", "reject_delay_time", "no_answer_delay_time",
                 "max_no_answer", "wrap_up_time"):
            n = atoi(value)
            if k in ("max_no_answer", "wrap_up_time"):  # atoi: C int
                n = <int>n
            setattr(a, k, n)
            a.instance_id = SINGLE_BOX
            self._ja(a, {k: n, "instance_id": SINGLE_BOX})
            self._async(a)
            return []
        if k == "type":
            if S.canonical(value or "", S.AGENT_TYPES) is None:
                raise CoreError("Invalid Agent Type!")
            a.type = value
            self._ja(a, {"type": value})
            return []
        raise CoreError("Invalid Agent Update KEY!")

    cdef void _set_state(self, Agent a, object value, long long now, bint receiving):
        a.state = value
        if receiving:
            a.last_offered_call = now
            self._ja(a, {"state": value, "last_offered_call": now})
            self._rr_update(a)
            self._reindex_agent(a, W_LOC)
        else:
            self._ja(a, {"state": value})
        self._async(a)
        self._state_ev(a.name, value)

    cdef list _set_status(self, Agent a, object value, long long now):
        """The `agent set status` path (also used by max-no-answer, §5.7)."""
        cdef list cancels = []
        self._bookkeep_queues(a, now)  # the module's continuous passes saw the agent until now
        if _low(value) == LOW_AVAILABLE:
            if a.status != value:
                a.status = value
                a.last_status_change = now
                a.talk_time = 0
                a.calls_answered = 0
                a.no_answer_count = 0
                self._ja(a, {"status": value, "last_status_change": now, "talk_time": 0,
                             "calls_answered": 0, "no_answer_count": 0})
        else:
            a.status = value
            a.last_status_change = now
            self._ja(a, {"status": value, "last_status_change": now})
            cancels = self._cancel_ringing_for_agent(a)
        self._reindex_agent(a)
        self._async(a)
        self._ev(S.ACTION_AGENT_STATUS_CHANGE,
                 [("CC-Agent", a.name), ("CC-Action", None), ("CC-Agent-Status", value)])
        return cancels

    cdef list _cancel_ringing_for_agent(self, Agent a):
        """§5.10: the member served by this agent (not Answered) has its ringing legs cancelled."""
        cdef Offer o = a.offer
        cdef Member m
        cdef list out = []
        if o is None:
            return out
        m = o.m
        if m.deleted or m.serving_agent != a.name or m.serving_system != SINGLE_BOX or m.state == MS_ANSWERED:
            return out
        for x in m.offers:
            if (<Offer>x).phase == P_RINGING:
                out.append(Cancel((<Offer>x).offer_id, m.uuid, (<Offer>x).agent, S.HANGUP_ORIGINATOR_CANCEL))
        return out

    def agent_get(self, key, name):
        """`agent get status|state|uuid`: the raw value (max 63 chars); event agent-<key>-get."""
        cdef Agent a = self._agent(name)
        cdef str k = _low(key)
        if k == "status":
            value = a.status
        elif k == "state":
            value = a.state
        elif k == "uuid":
            value = a.uuid
        else:
            raise CoreError("Invalid Agent Update KEY!")
        header = "CC-Agent-UUID" if k == "uuid" else "CC-Agent-" + key[:1].upper() + key[1:]
        self._ev(f"agent-{key}-get", [("CC-Agent", name), ("CC-Action", None), (header, value)])
        return (value or "")[:63]

    def agent_track(self, name, delta):
        """callcenter_track: external_calls_count += delta (no-op for an unknown agent)."""
        a = self._agents.get(name)
        if a is None:
            return
        (<Agent>a).external_calls_count += delta
        self._ja(<Agent>a, {"external_calls_count": (<Agent>a).external_calls_count})
        for t in (<Agent>a).tiers:  # skip-agents-with-external-calls
            self._rtier(<Tier>t)

    def tier_add(self, queue, agent, level=1, position=1):
        """`tier add`: state Ready. Errors in the module's order: queue, agent, duplicate."""
        if queue not in self._queues:
            raise CoreError("Queue not found!")
        if agent not in self._agents:
            raise CoreError("Agent not found!")
        if self._find_tier(queue, agent) is not None:
            raise CoreError("Tier already exist!")
        cdef Tier t = Tier()
        t.queue = queue
        t.agent_name = agent
        t.state = TS_READY
        t.level = level
        t.position = position
        self._add_tier(t)
        self._j("tiers", "insert", (queue, agent), t.row())

    def tier_set(self, key, queue, agent, value):
        """`tier set state|level|position` with the module's error mapping (W19 quirks)."""
        cdef Tier t = self._find_tier(queue, agent)
        if t is None:
            raise CoreError("Unknown Error!")
        if agent not in self._agents:
            raise CoreError("Agent not found!")
        if queue not in self._queues:
            raise CoreError("Agent not found!")
        cdef str k = _low(key)
        if k == "state":
            if S.canonical(value or "", S.TIER_STATES) is None:
                raise CoreError("Invalid Tier State!")
            t.state = _TIER_STATE_OBJ.get(value, value)
            t.sb = False
            self._jt(t, {"state": value})
            self._fsync(t)
        elif k == "level":
            t.level = <int>atoi(value)
            self._jt(t, {"level": t.level})
            self._tindex(t)
        elif k == "position":
            t.position = <int>atoi(value)
            self._jt(t, {"position": t.position})
            self._tindex(t)
        else:
            raise CoreError("Invalid Tier Update KEY!")

    def tier_del(self, queue, agent):
        """`tier del` (no check)."""
        cdef Tier t = self._find_tier(queue, agent)
        if t is None:
            return
        if t.agent is not None:
            self._bookkeep_queues(t.agent, self._last_now)
        self._drop_tier(t)

    # =========================================================================================
    # several ccfast nodes (docs/cluster.md): holds, rows other nodes wrote, lost queues

    def agent_hold(self, name, held):
        """Another node holds (True) or released (False) this agent: a held agent is never offered
        here (excluded like an agent with a live offer), its row and its indexes' keys are not
        changed, no journal, no event. Kept by name: a hold set before the agent row exists here
        applies when it arrives; `agent del` does not clear it. A live offer here is not touched."""
        cdef bint h = bool(held)
        if h:
            self._holds.add(name)
        else:
            self._holds.discard(name)
        a = self._agents.get(name)
        if a is not None and bool((<Agent>a).held) != h:
            (<Agent>a).held = h
            self._async(<Agent>a)

    def agent_held(self, name):
        """Whether agent_hold(name, True) is in force."""
        return name in self._holds

    def held_agents(self):
        """Names held by agent_hold, sorted."""
        return sorted(self._holds, key=str)

    def agent_apply(self, name, cols, now=None):
        """Apply an agents row as another node wrote it: ``cols`` None deletes the row and its tiers
        (like `agent del`), an unknown agent is inserted (missing columns as in load_rows), else the
        given columns are set. Not journaled, no events, never cancels a live offer (use agent_set
        for commands); every index (candidates, free/ready agents, sort keys, round-robin pointer,
        external calls) follows. ``now`` (optional) is the time for the §4.7 bookkeeping of a status
        change; default: the latest time the core has seen. Unknown columns raise ValueError."""
        cdef Agent a
        if now is not None:
            self._touch(now)
        if cols is None:
            self._agent_del(name, False)
            return
        unknown = set(cols) - _AGENT_COLSET
        if unknown:
            raise ValueError(f"unknown column(s) for agents: {', '.join(sorted(unknown))}")
        if "name" in cols and cols["name"] != name:
            raise ValueError(f"agent_apply({name!r}) cannot rename to {cols['name']!r}")
        x = self._agents.get(name)
        if x is None:
            row = dict(cols)
            row["name"] = name
            self._load_agent(row)
            return
        a = <Agent>x
        cdef int what = 0
        cdef bint status = False, ext = False, loc = False
        if "status" in cols and cols["status"] != a.status:
            self._bookkeep_queues(a, self._last_now)  # the passes until now saw the old status
        for k, v in cols.items():
            if k == "name":
                continue
            if k in AGENT_INT_COLS:
                v = int(v or 0)
            if getattr(a, k) == v:
                continue
            setattr(a, k, v)
            if k == "status":
                status = True
            elif k == "last_bridge_end":
                what |= W_LBE
            elif k == "talk_time":
                what |= W_TALK
            elif k == "calls_answered":
                what |= W_CALLS
            elif k == "last_offered_call":
                what |= W_LOC
                loc = True
            elif k == "external_calls_count":
                ext = True
        if loc:
            self._rr_update(a)
        if status:
            self._reindex_agent(a)
        elif what:
            self._reindex_agent(a, what)
        self._async(a)
        if ext:
            for t in a.tiers:
                self._rtier(<Tier>t)

    def tier_apply(self, queue, agent, cols, now=None):
        """Apply a tiers row as another node wrote it: None deletes it, an unknown pair is inserted,
        else state/level/position are set. Not journaled, no events; indexes follow."""
        cdef Tier t
        cdef long long v
        cdef bint rekey = False
        if now is not None:
            self._touch(now)
        t = self._find_tier(queue, agent)
        if cols is None:
            if t is not None:
                if t.agent is not None:
                    self._bookkeep_queues(t.agent, self._last_now)
                self._drop_tier(t, False)
            return
        unknown = set(cols) - _TIER_COLSET
        if unknown:
            raise ValueError(f"unknown column(s) for tiers: {', '.join(sorted(unknown))}")
        if cols.get("queue", queue) != queue or cols.get("agent", agent) != agent:
            raise ValueError(f"tier_apply({queue!r}, {agent!r}) cannot move the row")
        if t is None:
            row = dict(cols)
            row["queue"] = queue
            row["agent"] = agent
            self._load_tier(row)
            return
        if "state" in cols and cols["state"] != t.state:
            t.state = _TIER_STATE_OBJ.get(cols["state"], cols["state"])
            t.sb = False
            self._fsync(t)
        if "level" in cols:
            v = int(cols["level"] if cols["level"] is not None else 1)
            if v != t.level:
                t.level = <int>v
                rekey = True
        if "position" in cols:
            v = int(cols["position"] if cols["position"] is not None else 1)
            if v != t.position:
                t.position = <int>v
                rekey = True
        if rekey:
            self._tindex(t)

    def queue_suspend(self, name, suspended):
        """A queue this node lost (True) or got back (False). Suspended: no pass walks it, no
        member timeouts, no discards, no next_change wake-ups for it; its rows stay in memory as
        they are (nothing journaled, no events) and §4.7's last_agent_exist* do not advance.
        Resumed: everything is tracked again from its rows (like queue_set, without resetting the
        queue's counters). Joins, cancels and offer results for it still work while suspended."""
        cdef Queue q = self._queues.get(name)
        cdef Member m
        cdef bint s = bool(suspended)
        if q is None:
            raise CoreError("Queue not found!")
        if s == q.suspended:
            return
        self._bk_pre(q)  # the passes so far saw it as it was
        q.suspended = s
        q.tr_valid = False
        self._hq(q)
        self._aq(q)
        if q.nc_ok:
            q.nc_ok = False
            self._nc_dirty.add(q)
        if s:
            return
        if q.code == K_TD:
            self._td_dirty.add(q)
        for x in self._members.values():
            m = <Member>x
            if m.queue != name or m.deleted:
                continue
            if m.state == MS_WAITING or m.state == MS_TRYING:
                self._pending.append(m)
            elif m.state == MS_ABANDONED:
                heappush(self._discard_heap, (self._discard_due(m, q), m.seq, m))
            if m.has_loc:
                heappush(self._rp_heap, (m.last_originated + self._rp_delay(q), m.seq, m))

    def queue_suspended(self, name):
        """Whether the queue is suspended (False for an unknown queue)."""
        q = self._queues.get(name)
        return q is not None and (<Queue>q).suspended

    def members_forget(self, name, keep=()):
        """Drop the member rows of a suspended queue this node is about to re-take: the
        database's rows (the new generation's) replace them. Rows with a live offer and rows whose
        uuid is in ``keep`` (callers this node still serves) stay. Nothing journaled, no events,
        no counters changed; a dropped row's re-adoption entry goes with it. Returns the dropped
        member uuids in creation order. CoreError("Queue not found!") if not loaded, ValueError
        if the queue is not suspended (a dispatched queue's rows are the truth)."""
        cdef Queue q = self._queues.get(name)
        cdef Member m
        cdef list drop = []
        if q is None:
            raise CoreError("Queue not found!")
        if not q.suspended:
            raise ValueError(f"members_forget: queue {name!r} is not suspended")
        kept = set(keep)
        for x in self._members.values():
            m = <Member>x
            if m.queue == name and not m.deleted and not m.offers and m.uuid not in kept:
                drop.append(m)
        for m in drop:
            if self._readopt_m:
                self._readopt_drop(m.uuid)
            m.deleted = True
            m.in_app = False
            del self._members[m.uuid]
            self._msync(m)  # out of every index; the heaps skip deleted rows
        return [m.uuid for m in drop]

    # =========================================================================================
    # members (§3)

    def member_join(self, queue, member_uuid, session_uuid, cid_number, cid_name, system_epoch,
                    base_score, now):
        """§3.2: resume the caller's Abandoned row when the queue allows it, else a fresh join.

        ``base_score`` is atoi(cc_base_score); the core adds now - system_epoch when the queue's
        time-base-score is `system`. Events: member-queue-start|resume, members-count."""
        self._touch(now)
        cdef Queue q = self._queues.get(queue)
        cdef Member m = None
        cdef Member c
        cdef object ro = None
        cdef long long t_called = now
        if q is None:
            raise CoreError("Queue not found!")
        cid_number = cid_number or ""
        cid_name = cid_name or ""
        if self._readopt and session_uuid:  # the same channel back after a crash (load_recovered)
            ro = self._readopt.get(session_uuid)
            if ro is not None:
                c = <Member>ro[0]
                if (c.deleted or c.state != MS_ABANDONED or c.queue != queue
                        or now > self._readopt_until(<tuple>ro, q)):
                    self._readopt_drop(c.uuid)
                    ro = None
                else:
                    m = c
        if m is None and q.resume:
            rows = self._abandoned.get((queue, cid_number))
            if rows:
                for x in rows.values():
                    c = <Member>x
                    if m is None or c.abandoned_epoch > m.abandoned_epoch or (
                            c.abandoned_epoch == m.abandoned_epoch and c.seq < m.seq):
                        m = c
                if m is not None and m.abandoned_epoch == 0:
                    m = None
        if ro is not None:  # re-adoption: the crash is invisible, the row is as before it
            code = q.code
            marker = RING_ALL if code == K_RINGALL else (RING_PROG if code == K_RINGPROG else "")
            m.session_uuid = session_uuid
            m.state = MS_WAITING
            m.serving_agent = marker
            m.serving_system = ""
            m.abandoned_epoch = <long long>ro[3]
            m.instance_id = self.instance_id
            self._jm(m, {"session_uuid": session_uuid, "state": MS_WAITING, "serving_agent": marker,
                         "serving_system": "", "abandoned_epoch": m.abandoned_epoch,
                         "instance_id": self.instance_id})
            t_called = <long long>ro[4]
            self._readopt_drop(m.uuid)
            action = S.ACTION_MEMBER_QUEUE_RESUME
        elif m is not None:  # resume: keeps uuid, joined_epoch, base_score, seq (§3.2 step 7)
            if self._readopt_m:
                self._readopt_drop(m.uuid)
            m.session_uuid = session_uuid
            m.state = MS_WAITING
            m.rejoined_epoch = now
            m.instance_id = self.instance_id
            self._jm(m, {"session_uuid": session_uuid, "state": MS_WAITING, "rejoined_epoch": now,
                         "instance_id": self.instance_id})
            action = S.ACTION_MEMBER_QUEUE_RESUME
        else:
            if member_uuid in self._members:
                raise ValueError(f"member uuid {member_uuid!r} already exists")
            m = Member()
            m.queue = queue
            m.instance_id = self.instance_id
            m.uuid = member_uuid
            m.session_uuid = session_uuid
            m.cid_number = cid_number
            m.cid_name = cid_name
            m.system_epoch = system_epoch
            m.joined_epoch = now
            m.base_score = base_score + ((now - system_epoch) if q.tbs else 0)
            m.skill_score = 0
            code = _scode(q.strategy)
            m.serving_agent = RING_ALL if code == K_RINGALL else (RING_PROG if code == K_RINGPROG else "")
            m.serving_system = ""
            m.state = MS_WAITING
            self._seq += 1
            m.seq = self._seq
            m.offers = []
            self._members[member_uuid] = m
            self._j("members", "insert", (member_uuid,), m.row())
            action = S.ACTION_MEMBER_QUEUE_START
        # a new channel: no channel variables yet
        m.td_level = 0
        m.td_pos = 0
        m.has_loc = False
        m.agent_found = False
        m.in_app = True
        m.reported = False
        m.t_called = t_called
        if m.akey is not None:  # re-sort in the timer index with the new entry time
            self._remove_sorted(q.inapp, m.akey)
            m.akey = None
            self._aq(q)
            self._ncd(q)
        self._bk_pre(q)  # the channel variables below gate ring-progressively
        self._msync(m)
        self._pending.append(m)
        self._ev(action, [("CC-Queue", queue), ("CC-Action", None), ("CC-Member-UUID", m.uuid),
                          ("CC-Member-Session-UUID", session_uuid), ("CC-Member-CID-Name", cid_name),
                          ("CC-Member-CID-Number", cid_number)])
        self._members_count(queue)
        return Join(m.uuid, action == S.ACTION_MEMBER_QUEUE_RESUME, m.joined_epoch)

    cdef void _members_count(self, object queue):
        cdef long long n
        if queue and (<str>queue).startswith("*"):
            n = sum(self._count_wt.values())
            sel = "All-Queues"
        else:
            n = self._count_wt.get(queue, 0)
            sel = "Single-Queue"
        self._ev(S.ACTION_MEMBERS_COUNT, [("CC-Queue", queue), ("CC-Action", None), ("CC-Count", n),
                                          ("CC-Selection", sel)])

    cdef Member _member(self, object uuid):
        m = self._members.get(uuid)
        if m is None:
            raise CoreError("Member not found!")
        return <Member>m

    def member_cancel(self, member_uuid, reason, now):
        """§3.5 cancel path: row Abandoned, ringing legs to cancel (ORIGINATOR_CANCEL),
        member-queue-end (Cancel), calls_abandoned + 1, members-count. An unknown member (its row
        was deleted, e.g. its queue unloaded) is a no-op."""
        self._touch(now)
        cdef list out = []
        if member_uuid not in self._members:
            return out  # the row is gone already (e.g. its queue was unloaded): nothing to update
        cdef Member m = self._members[member_uuid]
        session = m.session_uuid
        m.state = MS_ABANDONED
        m.session_uuid = ""
        m.abandoned_epoch = now
        self._jm(m, {"state": MS_ABANDONED, "session_uuid": "", "abandoned_epoch": now})
        for x in m.offers:
            if (<Offer>x).phase == P_RINGING:
                out.append(Cancel((<Offer>x).offer_id, m.uuid, (<Offer>x).agent, S.HANGUP_ORIGINATOR_CANCEL))
        self._ev(S.ACTION_MEMBER_QUEUE_END,
                 [("CC-Queue", m.queue), ("CC-Action", None), ("CC-Member-Leaving-Time", now),
                  ("CC-Member-Joined-Time", m.t_called), ("CC-Cause", S.CAUSE_CANCEL),
                  ("CC-Cancel-Reason", reason), ("CC-Member-UUID", m.uuid),
                  ("CC-Member-Session-UUID", session), ("CC-Member-CID-Name", m.cid_name),
                  ("CC-Member-CID-Number", m.cid_number)])
        q = self._queues.get(m.queue)
        if q is not None:
            (<Queue>q).calls_abandoned += 1
        m.in_app = False
        self._msync(m)
        self._members_count(m.queue)
        return out

    def member_answered_exit(self, member_uuid):
        """§3.5 answered path: queue calls_answered + 1, members-count."""
        cdef Member m = self._member(member_uuid) if member_uuid in self._members else None
        q = self._queues.get(m.queue) if m is not None else None
        if m is None:
            return
        if q is not None:
            (<Queue>q).calls_answered += 1
        m.in_app = False
        self._msync(m)
        self._members_count(m.queue)

    # =========================================================================================
    # dispatch (§4)

    cdef inline long long _rp_delay(self, Queue q):
        return q.rp_delay

    cdef bint _rp_gated(self, Member m, Queue q, long long now):
        """§4.2 step 8: ring-progressively waits `delay` seconds after the member's last offer."""
        return (q.code == K_RINGPROG and m.has_loc and not m.agent_found
                and now < m.last_originated + self._rp_delay(q))

    cdef void _normalise(self, Member m, Queue q):
        """§4.2 steps 4 and 6 for a dispatchable member: ring marker vs strategy, ring Trying."""
        cdef object marker = m.serving_agent if m.serving_agent is not None else ""
        cdef int code = q.code
        cdef dict cols = {}
        cdef str lm = _low(marker)
        if lm == RING_ALL and code != K_RINGALL:
            if m.state == MS_TRYING and marker == RING_ALL:
                if code == K_RINGPROG:
                    m.serving_agent = RING_PROG
                    cols["serving_agent"] = RING_PROG
                else:
                    m.serving_agent = ""
                    m.state = MS_WAITING
                    cols["serving_agent"] = ""
                    cols["state"] = MS_WAITING
        elif lm == RING_PROG and code != K_RINGPROG:
            if m.state == MS_TRYING and marker == RING_PROG:
                if code == K_RINGALL:
                    m.serving_agent = RING_ALL
                    cols["serving_agent"] = RING_ALL
                else:
                    m.serving_agent = ""
                    m.state = MS_WAITING
                    cols["serving_agent"] = ""
                    cols["state"] = MS_WAITING
        elif code == K_RINGALL and lm != RING_ALL:
            if m.state == MS_WAITING and marker == "":
                m.serving_agent = RING_ALL
                m.state = MS_TRYING
                cols["serving_agent"] = RING_ALL
                cols["state"] = MS_TRYING
        elif code == K_RINGPROG and lm != RING_PROG:
            if m.state == MS_WAITING and marker == "":
                m.serving_agent = RING_PROG
                m.state = MS_TRYING
                cols["serving_agent"] = RING_PROG
                cols["state"] = MS_TRYING
        if (code == K_RINGALL or code == K_RINGPROG) and m.state == MS_WAITING:
            m.state = MS_TRYING
            cols["state"] = MS_TRYING
        if cols:
            self._jm(m, cols)
            self._msync(m)
        if code == K_RINGALL or code == K_RINGPROG:
            # a marker of the other ring strategy is only fixed on the member's next pass
            if m.in_idx and m.serving_agent != (RING_ALL if code == K_RINGALL else RING_PROG):
                self._pending_next.append(m)

    cdef void _pre_pass(self, long long now):
        """What a pass does besides offers: unknown queues, discards, normalisation, §4.7."""
        cdef Member m
        cdef Queue q
        # members of unknown queues are deleted (§4.2 step 1)
        if self._orphans:
            orphans = self._orphans
            self._orphans = []
            for x in orphans:
                m = <Member>x
                if m.deleted or m.queue in self._queues or m.instance_id != self.instance_id:
                    continue
                if m.state == MS_WAITING or m.state == MS_ABANDONED or (
                        m.state == MS_TRYING and (m.serving_agent == RING_ALL or m.serving_agent == RING_PROG)):
                    self._delete_member(m)
        self._discard(now, None)
        if self._pending:
            pending = self._pending
            self._pending = []
            for x in pending:
                m = <Member>x
                q = self._queues.get(m.queue)
                if q is not None and not q.suspended and self._selectable(m, q):  # (resume re-adds)
                    self._normalise(m, q)
        if self._pending_next:
            self._pending.extend(self._pending_next)
            self._pending_next = []

    # -- §4.7 bookkeeping, lazily ---------------------------------------------------------
    # A pass at time t sets last_agent_exist_check = t when it evaluates a member of q (some
    # dispatchable member not held by the ring-progressively gate) and last_agent_exist = t when
    # that member's candidate query returned a row. Between changes to q's indexes those two
    # flags are constant (the gate only opens with time, so the latest pass sees the most), so
    # instead of visiting every queue in every pass, the passes since q's last change are
    # accounted just before the next change (_bk_pre) or read.

    cdef bint _bk_ev(self, Queue q, long long t):
        if q.suspended or not q.members:  # a suspended queue's members are not evaluated
            return False
        if q.code != K_RINGPROG:
            return True
        for e in q.members:
            if not self._rp_gated(<Member>e, q, t):
                return True
        return False

    cdef bint _bk_fd(self, Queue q):
        cdef Tier last
        cdef Py_ssize_t i
        if not q.idx:
            return False
        if q.code != K_TD:
            return True
        # top-down: a member's walk is empty iff its pointer >= the largest candidate key
        last = <Tier>q.idx[len(q.idx) - 1]
        i = bisect_left(q.td_ptrs, (last.k0, last.k1))
        return i > 0 or (len(q.members) > len(q.td_ptrs) and (last.k0 > 0 or (last.k0 == 0 and last.k1 > 0)))

    cdef void _bk_pre(self, Queue q):
        """Account the passes since q's last change, with q's (unchanged) flags."""
        if q.bk_since >= self._pass_id:
            return
        q.bk_since = self._pass_id
        if self._bk_ev(q, self._pass_now):
            if self._pass_now > q.last_agent_exist_check:
                q.last_agent_exist_check = self._pass_now
            if self._bk_fd(q) and self._pass_now > q.last_agent_exist:
                q.last_agent_exist = self._pass_now

    cdef void _bk_touch(self, Queue q, long long now):
        """As if a pass ran at `now` (the module's dispatcher runs every 100 ms), without the
        top-down wrap a real pass would also do."""
        self._bk_pre(q)
        if self._bk_ev(q, now):
            if now > q.last_agent_exist_check:
                q.last_agent_exist_check = now
            if self._bk_fd(q) and now > q.last_agent_exist:
                q.last_agent_exist = now

    cdef void _bookkeep_queues(self, Agent a, long long now):
        for t in a.tiers:
            q = self._queues.get((<Tier>t).queue)
            if q is not None:
                self._bk_touch(<Queue>q, now)

    cdef void _td_sweep(self, Queue q, long long now):
        """A real pass over a top-down queue whose pointers may be past its last candidate:
        those members' walks are empty, so their pointers are unset (§4.3), and §4.7."""
        cdef Tier last
        cdef Py_ssize_t i, n
        cdef Member m
        cdef bint found
        if not q.members:
            return
        last = <Tier>q.idx[len(q.idx) - 1] if q.idx else None
        i = bisect_left(q.td_ptrs, (last.k0, last.k1)) if last is not None else 0
        n = len(q.td_ptrs)
        found = last is not None and (i > 0 or (
            len(q.members) > n and (last.k0 > 0 or (last.k0 == 0 and last.k1 > 0))))
        q.last_agent_exist_check = now
        if found:
            q.last_agent_exist = now
        q.bk_since = self._pass_id
        if i < n:
            for e in q.td_ptrs[i:]:
                m = <Member>e[3]
                m.tdkey = None
                m.td_level = 0
                m.td_pos = 0
                m.td_skip = self._pass_id  # this pass's walk (old pointer) is empty: no offer
            del q.td_ptrs[i:]

    cdef bint _time_ok(self, Agent a, long long now):
        return a.last_bridge_end < now - a.wrap_up_time and a.ready_time <= now

    def dispatch(self, long long now):
        """One dispatcher pass (§4.1-§4.8) at `now`: the offers to originate, in order."""
        cdef list offers = []
        cdef Agent a
        cdef Tier t
        cdef Queue q
        cdef list hot = []
        cdef list heap = []
        cdef list pos
        cdef Py_ssize_t i, p
        cdef Member m
        self._touch(now)
        self._pre_pass(now)
        dirty = None
        if self._td_dirty:
            dirty = self._td_dirty
            self._td_dirty = set()
            for x in dirty:
                self._bk_pre(<Queue>x)  # earlier passes saw the old pointers
        self._pass_id += 1
        self._pass_now = now
        if dirty is not None:
            for x in dirty:
                if self._queues.get((<Queue>x).name) is x and not (<Queue>x).suspended:
                    self._td_sweep(<Queue>x, now)  # (a suspended queue is swept at its resume)
        # queues where some agent could be offered now: members and ready agents (kept by
        # _rtier/_hq as agents, tiers and members change; nothing here scans the free agents)
        self._advance(now)
        if not self._hot_qs:
            return offers
        for x in self._hot_qs:
            q = <Queue>x
            q.hot_pass = self._pass_id
            q.hot = q.nready  # undone in _start_offer by the same test
            hot.append(q)
        self._in_pass = True
        try:
            pos = [0] * len(hot)
            for i in range(len(hot)):
                m = <Member>(<Queue>hot[i]).members[0]
                heap.append((m.mk0, m.seq, i))
            heapify(heap)
            while heap:
                k, seq, i = heappop(heap)
                q = <Queue>hot[i]
                if q.hot <= 0:
                    continue
                p = pos[i]
                m = <Member>q.members[p]
                pos[i] = p + 1
                if m.in_idx and not self._rp_gated(m, q, now):
                    self._walk(m, q, now, offers)
                if q.hot > 0 and p + 1 < len(q.members):
                    m = <Member>q.members[p + 1]
                    heappush(heap, (m.mk0, m.seq, i))
        finally:
            self._in_pass = False
            for qm, key in self._deferred_members:
                self._bk_pre(<Queue>qm)
                (<Queue>qm).tr_valid = False
                _member_remove((<Queue>qm).members, <Member>key)
                self._joins_remove(<Queue>qm, <Member>key)
                self._hq(<Queue>qm)
                self._ncd(<Queue>qm)
            self._deferred_members = []
            if self._deferred_agents:
                agents = self._deferred_agents
                self._deferred_agents = set()
                for x in agents:
                    self._reindex_agent(<Agent>x, W_LOC)
                    for t in (<Agent>x).tiers:
                        self._fsync(<Tier>t)
        return offers

    cdef void _walk(self, Member m, Queue q, long long now, list offers):
        """The candidate rows of one member in the strategy's order (§4.3), processed per §4.5."""
        cdef Walk w
        cdef list idx = q.idx if q.tra else q.fidx
        cdef Py_ssize_t n = len(idx), i, j, s1, e1
        cdef int code = q.code
        cdef int r
        cdef Tier ptr
        cdef list group
        w.tier = 0
        w.count = 0
        self.n_walks += 1
        if n == 0:
            return
        if code == K_TD:
            if m.td_skip == self._pass_id:
                return
            s1 = _tier_probe(idx, m.td_level, m.td_pos + 1, True)
            for i in range(s1, n):
                if self._row(m, q, <Tier>idx[i], now, &w, offers):
                    return
            return
        if code == K_RR:
            ptr = self._rr_pointer(q)
            if ptr is not None:
                s1 = _tier_probe(idx, ptr.level, ptr.position + 1, True)
                e1 = _tier_probe(idx, ptr.level + 1, 0, False)
                for i in range(s1, e1):
                    if self._row(m, q, <Tier>idx[i], now, &w, offers):
                        return
                idx = q.idx if q.tra else q.fidx
                n = len(idx)
            for i in range(n):
                if self._row(m, q, <Tier>idx[i], now, &w, offers):
                    return
            return
        if code == K_RANDOM:
            i = 0
            while i < n:
                j = _tier_probe(idx, (<Tier>idx[i]).k0 + 1, 0, False, i)
                group = idx[i:j]
                # lazy Fisher-Yates: draw the next row of this level at random
                for s1 in range(len(group)):
                    e1 = s1 + <Py_ssize_t>(self._rand() % <unsigned long long>(len(group) - s1))
                    group[s1], group[e1] = group[e1], group[s1]
                    if self._row(m, q, <Tier>group[s1], now, &w, offers):
                        return
                i = j
            return
        for i in range(n):
            if self._row(m, q, <Tier>idx[i], now, &w, offers):
                return

    cdef int _row(self, Member m, Queue q, Tier t, long long now, Walk* w, list offers) except -1:
        """§4.5 for one candidate row. Returns 1 to stop this member's pass, 0 to go on."""
        cdef Agent a = t.agent
        cdef long long waited, level = t.level
        self.n_rows += 1
        cdef bint reserved = False
        cdef object ts, prev_state
        cdef Offer o
        # step 2: tier rules (§4.6)
        if q.tra and level > w.tier:
            waited = now - m.joined_epoch
            if q.trn and w.count == 0:
                w.tier = level
            elif q.trm and waited >= level * q.trw:
                w.tier = level
                w.count = 0
            elif not q.trm and waited >= q.trw:
                w.tier = level
                w.count = 0
            else:
                return 1
        w.count += 1
        # step 4: eligibility
        if not _offerable(t):
            return 0
        _aflags(a)
        if not a.c_waiting:
            return 0
        if not (a.last_bridge_end < now - a.wrap_up_time):
            return 0
        if a.ready_time > now:
            return 0
        if a.c_on_break:
            return 0
        if q.skip_ext and a.external_calls_count > 0:
            return 0
        if a.offer is not None or a.held:  # ccfast: one live offer per agent (cluster-wide)
            return 0
        # step 5: agent of another box
        if not a.c_single_box:
            return 1 if q.code == K_RINGALL else 0
        # step 6: reservation
        prev_state = a.state
        if self.reserve_agents:
            if not (a.state == AS_WAITING and (a.status == ST_AVAILABLE or a.status == ST_ON_DEMAND)):
                return 0
            a.state = AS_RESERVED
            self._ja(a, {"state": AS_RESERVED})
            self._async(a)
            self._state_ev(a.name, AS_RESERVED)
            reserved = True
        # step 7: claim the member
        if not self._claim(m, q, a):
            if reserved:  # W6 fix: undo the reservation instead of leaking it
                a.state = AS_WAITING
                self._ja(a, {"state": AS_WAITING})
                self._async(a)
                self._state_ev(a.name, AS_WAITING)
            return 1
        # step 8: the offer
        o = self._start_offer(m, q, t, now)
        o.prev_state = prev_state  # before the reservation
        offers.append(o)
        return 0 if q.code == K_RINGALL else 1

    cdef bint _claim(self, Member m, Queue q, Agent a):
        if q.code == K_RINGALL or q.code == K_RINGPROG:
            # the configured spelling is compared with the marker (W11: `Ring-All` never matches)
            return m.serving_agent == q.strategy and m.instance_id == self.instance_id
        if m.state != MS_WAITING or m.instance_id != self.instance_id:
            return False
        m.serving_agent = a.name
        m.serving_system = a.instance_id
        m.state = MS_TRYING
        self._jm(m, {"serving_agent": a.name, "serving_system": a.instance_id, "state": MS_TRYING})
        self._msync(m)
        return True

    cdef Offer _start_offer(self, Member m, Queue q, Tier t, long long now):
        """§5.1 + §5.2 (member present): snapshot, channel vars, agent Receiving, tiers."""
        cdef Agent a = t.agent
        cdef Offer o = Offer()
        cdef Tier other
        self._offer_seq += 1
        o.offer_id = self._offer_seq
        o.queue = q.name
        o.member_uuid = m.uuid
        o.member_session_uuid = m.session_uuid
        o.agent = a.name
        o.agent_type = a.type or ""
        o.agent_contact = a.contact or ""
        o.agent_uuid = a.uuid or ""
        o.agent_system = a.instance_id
        o.strategy = q.strategy
        o.level = t.level
        o.position = t.position
        o.cid_number = m.cid_number or ""
        o.cid_name = m.cid_name or ""
        o.joined_epoch = m.joined_epoch
        o.created = now
        o.m = m
        o.a = a
        o.snap_status = a.status
        o.snap_nac = a.no_answer_count
        o.snap_max_no_answer = a.max_no_answer
        o.snap_reject = a.reject_delay_time
        o.snap_busy = a.busy_delay_time
        o.snap_noans = a.no_answer_delay_time
        o.no_answer_status = q.no_answer_status
        o.phase = P_RINGING
        o.prev_state = a.state
        o.prev_loc = a.last_offered_call
        o.prev_tier_state = t.state
        o.prev_has_loc = m.has_loc
        o.prev_lo = m.last_originated
        o.prev_td_level = m.td_level
        o.prev_td_pos = m.td_pos
        self._offers[o.offer_id] = o
        m.offers.append(o)
        if m.session_uuid:  # channel variables exist only on a live member channel
            if q.code == K_RINGPROG:
                self._bk_pre(q)
                m.has_loc = True
                m.last_originated = now
                heappush(self._rp_heap, (now + self._rp_delay(q), m.seq, m))
            if q.code == K_TD:
                m.td_level = t.level
                m.td_pos = t.position
                self._msync(m)
        # agent Receiving (event), tiers Offering / other Ready -> Standby
        a.offer = o
        a.state = AS_RECEIVING
        a.last_offered_call = now
        self._ja(a, {"state": AS_RECEIVING, "last_offered_call": now})
        self._rr_update(a)
        self._reindex_agent(a, W_LOC)
        self._async(a)
        for y in a.tiers:  # this agent no longer makes its queues worth walking in this pass
            other = <Tier>y
            if (other.kq is not None and other.kq.hot_pass == self._pass_id and _offerable(other)
                    and not (other.kq.skip_ext and a.external_calls_count > 0)):
                other.kq.hot -= 1
        self._state_ev(a.name, AS_RECEIVING)
        t.state = TS_OFFERING
        self._jt(t, {"state": TS_OFFERING})
        self._fsync(t)
        for y in a.tiers:
            other = <Tier>y
            if other is not t and other.state == TS_READY:
                other.state = TS_STANDBY
                self._jt(other, {"state": TS_STANDBY})
                self._fsync(other)
                other.sb = True
        self._offering_ev(q, a, m)
        return o

    # =========================================================================================
    # timers (§3.4, §3.7) and next_change

    def member_timeouts(self, long long now):
        """The member watchdog (§3.4) at `now`: members to end with TIMEOUT / NO_AGENT_TIMEOUT.

        max-wait-time never ends a member with a live offer that is not yet bridged (ringing or
        connecting); it fires once that offer is over. Each member is reported once; the service
        then calls ``member_cancel(uuid, reason, now)``."""
        cdef list out = []
        cdef Queue q
        cdef Member m
        cdef long long mw, N, R, C, E, bound
        cdef list hits
        cdef list groups = None
        self._touch(now)
        if not self._app_qs:
            return out
        # only queues with members in the timer index; hits are applied after the loop (that
        # changes the set) and reported in queue load order (as self._queues)
        for x in self._app_qs:
            q = <Queue>x
            if not q.inapp:  # (the set follows inapp; never index an empty list unchecked)
                continue
            self._bk_touch(q, now)  # the module's passes run continuously
            mw = q.max_wait
            N = q.na_n
            hits = None
            if mw > 0 and (<Member>q.inapp[0][2]).t_called + mw <= now:
                for e in q.inapp:
                    m = <Member>e[2]
                    if m.t_called + mw > now:
                        break
                    if self._connecting(m):
                        continue
                    if hits is None:
                        hits = []
                    hits.append((m, S.CANCEL_TIMEOUT))
            if N > 0:
                C = q.last_agent_exist_check
                E = q.last_agent_exist
                if C > E and C - E >= N:
                    R = q.na_r
                    bound = C if R == 0 else C - R - N
                    for e in q.inapp:
                        m = <Member>e[2]
                        if m.t_called > bound:
                            break
                        if mw > 0 and m.t_called + mw <= now and not self._connecting(m):
                            continue  # already a TIMEOUT
                        if hits is None:
                            hits = []
                        hits.append((m, S.CANCEL_NO_AGENT_TIMEOUT))
            if hits is not None:
                if groups is None:
                    groups = []
                groups.append((q.order, hits))
        if groups is None:
            return out
        if len(groups) > 1:
            groups.sort(key=_first)
        for g in groups:
            for m, reason in g[1]:
                m.reported = True
                self._msync(m)
                out.append(Timeout(m.uuid, m.session_uuid, m.queue, reason))
        return out

    cdef bint _connecting(self, Member m):
        for x in m.offers:
            if (<Offer>x).phase == P_RINGING or (<Offer>x).phase == P_ANSWERED:
                return True
        return False

    cdef list _discard(self, long long now, list out):
        """§3.7: Abandoned rows older than discard-abandoned-after are deleted."""
        cdef Member m
        cdef Queue q
        cdef long long due
        while self._discard_heap and self._discard_heap[0][0] <= now:
            due, seq, x = heappop(self._discard_heap)
            m = <Member>x
            if m.deleted or m.state != MS_ABANDONED or m.instance_id != self.instance_id:
                continue
            q = self._queues.get(m.queue)
            if q is None or q.suspended:  # queue_suspend(.., False) pushes it again
                continue
            due = self._discard_due(m, q)
            if due > now:
                heappush(self._discard_heap, (due, m.seq, m))
                continue
            self._delete_member(m)
            if out is not None:
                out.append(m.uuid)
        return out

    cdef void _delete_member(self, Member m):
        if self._readopt_m:
            self._readopt_drop(m.uuid)
        self._j("members", "delete", (m.uuid,), {})
        m.deleted = True
        m.in_app = False
        if self._members.get(m.uuid) is m:
            del self._members[m.uuid]
        self._msync(m)

    def discard_abandoned(self, long long now):
        """Delete expired Abandoned rows (§3.7); returns their member uuids. A pass does this too."""
        self._touch(now)
        return self._discard(now, [])

    def next_change(self, long long now):
        """The earliest second > now at which a pass, the watchdog or the discard could decide
        differently without any other input (None: nothing pending). Call dispatch(),
        member_timeouts() and discard_abandoned() after every state change and at that time.

        O(log n) per change since the last call: free agents in wrap-up/delay sit in a heap by
        the second they become offerable, each queue's own earliest change (tier-rule crossing,
        max-wait, no-agent expiry) is cached and recomputed only when that queue changed."""
        cdef long long best = NO_ENTRY, t
        cdef Agent a
        cdef Queue q
        cdef Member m
        self._advance(now)
        # free agents: the first second one of them is past its wrap-up and ready_time
        while self._ok_heap:
            t, _, x = self._ok_heap[0]
            a = <Agent>x
            if a.ok_at == t and a.in_free and not a.in_ready:
                best = t
                break
            heappop(self._ok_heap)
            if a.ok_at == t:
                a.ok_at = NO_ENTRY
        if len(self._ok_heap) > 2 * len(self._free) + 64:
            self._compact_ok_heap()
        while self._rp_heap:
            t, seq, x = self._rp_heap[0]
            m = <Member>x
            q = self._queues.get(m.queue)
            if t <= now or m.deleted or q is None or q.suspended or not m.in_idx or not m.has_loc:
                heappop(self._rp_heap)
                continue
            if best == NO_ENTRY or t < best:
                best = t
            break
        while self._discard_heap:
            t, seq, x = self._discard_heap[0]
            m = <Member>x
            if m.deleted or m.state != MS_ABANDONED or self._q_suspended(m.queue):
                heappop(self._discard_heap)
                continue
            if t <= now:
                t = now + 1
            if best == NO_ENTRY or t < best:
                best = t
            break
        # queues: cached values, recomputed for the queues that changed (or expired)
        if now < self._nc_now:  # time went back (tests): every cached value is suspect
            for x in self._queues.values():
                (<Queue>x).nc_ok = False
                (<Queue>x).tr_valid = False
                self._nc_dirty.add(x)
        self._nc_now = now
        if self._nc_dirty:
            dirty = self._nc_dirty
            self._nc_dirty = set()
            for x in dirty:
                q = <Queue>x
                if not q.removed:
                    self._nc_store(q, now)
        while self._nc_heap:
            t, _, x = self._nc_heap[0]
            q = <Queue>x
            if q.removed or t != q.nc_in:
                heappop(self._nc_heap)
                if t == q.nc_in:
                    q.nc_in = -1
                continue
            if t <= now:  # expired: this queue's next value
                heappop(self._nc_heap)
                q.nc_in = -1
                self._nc_store(q, now)
                continue
            if best == NO_ENTRY or t < best:
                best = t
            break
        if len(self._nc_heap) > 2 * len(self._queues) + 64:
            self._compact_nc_heap()
        return None if best == NO_ENTRY else best

    cdef void _nc_store(self, Queue q, long long now):
        """Recompute q's next_change value at now and give it a heap entry."""
        q.nc = self._q_next(q, now)
        q.nc_at = now
        q.nc_ok = True
        if q.nc != q.nc_in:
            q.nc_in = q.nc  # an older entry (other value) is now stale
            if q.nc != -1:
                self._ncseq += 1
                heappush(self._nc_heap, (q.nc, self._ncseq, q))

    cdef void _compact_nc_heap(self):
        cdef Queue q
        self._nc_heap = []
        for x in self._queues.values():
            q = <Queue>x
            q.nc_in = -1
            if q.nc_ok and q.nc != -1:
                q.nc_in = q.nc
                self._ncseq += 1
                self._nc_heap.append((q.nc, self._ncseq, q))
        heapify(self._nc_heap)

    cdef void _compact_ok_heap(self):
        cdef Agent a
        for e in self._ok_heap:
            (<Agent>e[2]).ok_at = NO_ENTRY
        self._ok_heap = []
        for x in self._free:
            self._ready_sync(<Agent>x)

    cdef long long _q_next(self, Queue q, long long now):
        """q's own earliest change > now (-1: none): a tier-rule threshold crossing, a max-wait
        expiry, a no-agent expiry. Valid until then unless q changes (_ncd)."""
        cdef long long best = -1, t, mw, N, R, E, A, bound
        cdef Py_ssize_t i
        cdef Member m
        if q.suspended:
            return -1
        if q.members and q.tra:
            if not q.tr_valid or (q.tr_next != -1 and q.tr_next <= now):
                q.tr_next = self._tier_rule_next(q, now)
                q.tr_valid = True
            if q.tr_next != -1:
                best = q.tr_next
        if not q.inapp:
            return best
        mw = q.max_wait
        if mw > 0:
            i = bisect_right(q.inapp, (now - mw, float("inf")))
            if i < len(q.inapp):
                t = (<Member>q.inapp[i][2]).t_called + mw
                if best == -1 or t < best:
                    best = t
        N = q.na_n
        R = q.na_r
        self._bk_pre(q)
        if N > 0 and not q.idx:
            E = q.last_agent_exist
            A = E + N
            if A > now:
                m = <Member>q.inapp[0][2]
                t = max(A, m.t_called + R + N) if R > 0 else max(A, m.t_called)
                if best == -1 or t < best:
                    best = t
            else:
                bound = now - R - N if R > 0 else now
                i = bisect_right(q.inapp, (bound, float("inf")))
                if i < len(q.inapp):
                    m = <Member>q.inapp[i][2]
                    t = m.t_called + R + N if R > 0 else m.t_called
                    t = max(t, now + 1)
                    if best == -1 or t < best:
                        best = t
        return best

    def _scan_next_change(self, long long now):
        """Reference for tests: next_change by scanning every free agent and every queue (what
        next_change computed before its caches). Must always equal next_change(now)."""
        cdef object best = None
        cdef Agent a
        cdef Queue q
        cdef Member m
        cdef long long t
        for x in self._free:
            a = <Agent>x
            t = a.last_bridge_end + a.wrap_up_time + 1
            if a.ready_time > t:
                t = a.ready_time
            if t > now and (best is None or t < best):
                best = t
        for x in self._rp_heap:
            m = <Member>x[2]
            t = x[0]
            if (t <= now or m.deleted or self._queues.get(m.queue) is None or self._q_suspended(m.queue)
                    or not m.in_idx or not m.has_loc):
                continue
            if best is None or t < best:
                best = t
        for x in self._discard_heap:
            m = <Member>x[2]
            if m.deleted or m.state != MS_ABANDONED or self._q_suspended(m.queue):
                continue
            t = max(<long long>x[0], now + 1)
            if best is None or t < best:
                best = t
        self._ref_scan = True
        try:
            for x in self._queues.values():
                q = <Queue>x
                q.tr_valid = False
                t = self._q_next(q, now)
                q.tr_valid = False
                if t != -1 and (best is None or t < best):
                    best = t
        finally:
            self._ref_scan = False
        return best

    cdef long long _tier_rule_next(self, Queue q, long long now):
        """The first second > now at which a member of q has waited a tier-rule threshold of a
        level present in q (-1: none). Cached by next_change until q's members or levels change."""
        cdef long long best = -1, t, th
        cdef Py_ssize_t i = 0
        cdef Member m
        levels = set()
        while i < len(q.idx):
            levels.add((<Tier>q.idx[i]).k0)
            i = _tier_probe(q.idx, (<Tier>q.idx[i]).k0 + 1, 0, False, i)
        thresholds = {(lv * q.trw if q.trm else q.trw) for lv in levels}
        if q.joins is not None and not self._ref_scan:  # per threshold, the earliest join that has not yet waited it
            for x in thresholds:
                th = x
                i = bisect_right(q.joins, now - th)
                if i < len(q.joins):
                    t = <long long>q.joins[i] + th
                    if best == -1 or t < best:
                        best = t
            return best
        for e in q.members:
            m = <Member>e
            for x in thresholds:
                th = x
                t = m.joined_epoch + th
                if t > now and (best == -1 or t < best):
                    best = t
        return best

    # =========================================================================================
    # offer results (§5)

    cdef Offer _live(self, long long offer_id, int phase):
        o = self._offers.get(offer_id)
        if o is None:
            raise CoreError(f"offer {offer_id} is not live")
        if (<Offer>o).phase != phase:
            raise CoreError(f"offer {offer_id} is {(<Offer>o).phase_name}, expected "
                            f"{('ringing', 'answered', 'bridged', 'done')[phase]}")
        return <Offer>o

    def offer_member_gone(self, long long offer_id, long long now):
        """§5.2: the member channel was gone when the offer started: member Abandoned (if not
        already), tiers back, agent Waiting. No agent-offering/bridge-agent-fail is due."""
        self._touch(now)
        cdef Offer o = self._live(offer_id, P_RINGING)
        cdef Member m = o.m
        if m.state != MS_ABANDONED and m.instance_id == self.instance_id:
            m.state = MS_ABANDONED
            m.session_uuid = ""
            m.abandoned_epoch = now
            self._jm(m, {"state": MS_ABANDONED, "session_uuid": "", "abandoned_epoch": now})
            self._msync(m)
        self._final_cleanup(o, TS_READY, False)

    def offer_answered(self, long long offer_id, agent_uuid, long long now):
        """§5.5 step 2-6. Ring strategies race for the member: the first answer wins and the other
        ringing legs are to be hung up (LOSE_RACE). W7 fix: a leg that answers after losing is
        finished here (tiers back, agent Waiting) and must be hung up by the service."""
        self._touch(now)
        cdef Offer o = self._live(offer_id, P_RINGING)
        cdef Member m = o.m
        cdef Agent a = o.a
        cdef list cancels = []
        cdef int code = _scode(o.strategy)
        if code == K_RINGALL or code == K_RINGPROG:
            if (m.deleted or m.state != MS_TRYING or m.instance_id != self.instance_id
                    or m.serving_agent != o.strategy):
                self._final_cleanup(o, TS_READY, False)
                return Answer(False, [])
            m.serving_agent = a.name
            m.serving_system = SINGLE_BOX
            self._jm(m, {"serving_agent": a.name, "serving_system": SINGLE_BOX, "state": MS_TRYING})
            self._msync(m)
            for x in m.offers:
                if x is not o and (<Offer>x).phase == P_RINGING:
                    cancels.append(Cancel((<Offer>x).offer_id, m.uuid, (<Offer>x).agent, S.HANGUP_LOSE_RACE))
        o.phase = P_ANSWERED
        o.answered_uuid = agent_uuid
        o.answered_time = now
        if m.mq is not None:
            self._bk_pre(m.mq)
        m.agent_found = True
        self._ev(S.ACTION_BRIDGE_AGENT_START,
                 [("CC-Queue", o.queue), ("CC-Action", None), ("CC-Agent", o.agent),
                  ("CC-Agent-System", o.agent_system), ("CC-Agent-UUID", agent_uuid),
                  ("CC-Agent-Called-Time", self._called_time(o)), ("CC-Agent-Answered-Time", now),
                  ("CC-Member-Joined-Time", o.joined_epoch), ("CC-Member-UUID", o.member_uuid),
                  ("CC-Member-Session-UUID", o.member_session_uuid), ("CC-Member-CID-Name", o.cid_name),
                  ("CC-Member-CID-Number", o.cid_number)])
        return Answer(True, cancels)

    cdef long long _called_time(self, Offer o):
        return 0 if _low(o.agent_type) == LOW_UUID_STANDBY else o.created

    def offer_bridged(self, long long offer_id, long long now):
        """§5.5 steps 9-10 (bridged): member Answered, agent counters, tier Active Inbound,
        agent In a queue call."""
        self._touch(now)
        cdef Offer o = self._live(offer_id, P_ANSWERED)
        cdef Member m = o.m
        cdef Agent a = o.a
        cdef Tier t
        if m.instance_id == self.instance_id:
            m.state = MS_ANSWERED
            m.bridge_epoch = now
            self._jm(m, {"state": MS_ANSWERED, "bridge_epoch": now})
            self._msync(m)
        if a.instance_id == o.agent_system:
            a.uuid = o.answered_uuid
            a.last_bridge_start = now
            a.calls_answered += 1
            a.no_answer_count = 0
            self._ja(a, {"uuid": a.uuid, "last_bridge_start": now, "calls_answered": a.calls_answered,
                         "no_answer_count": 0})
            self._reindex_agent(a, W_CALLS)
        t = self._atier(a, o.queue)
        if t is not None and not a.deleted:
            t.state = TS_ACTIVE
            self._jt(t, {"state": TS_ACTIVE})
            self._fsync(t)
        a.state = AS_IN_CALL
        self._ja(a, {"state": AS_IN_CALL})
        self._async(a)
        self._state_ev(a.name, AS_IN_CALL)
        o.phase = P_BRIDGED

    def offer_bridge_failed(self, long long offer_id, bint member_gone, long long now):
        """§5.5 step 9 (not bridged). Member gone: row Abandoned. Agent gone: member back to
        Waiting -- W8 fix: serving_agent/serving_system reset (ring marker restored) so it is
        dispatched again. Then bridge-agent-end (bridged false) and the final cleanup."""
        self._touch(now)
        cdef Offer o = self._live(offer_id, P_ANSWERED)
        cdef Member m = o.m
        cdef Queue q
        if m.instance_id == self.instance_id:
            if member_gone:
                m.state = MS_ABANDONED
                m.session_uuid = ""
                m.abandoned_epoch = now
                self._jm(m, {"state": MS_ABANDONED, "session_uuid": "", "abandoned_epoch": now})
            else:
                q = self._queues.get(m.queue)
                code = q.code if q is not None else _scode(o.strategy)
                marker = RING_ALL if code == K_RINGALL else (RING_PROG if code == K_RINGPROG else "")
                m.state = MS_WAITING
                m.serving_agent = marker
                m.serving_system = ""
                self._jm(m, {"state": MS_WAITING, "serving_agent": marker, "serving_system": ""})
                self._pending.append(m)
            self._msync(m)
        self._bridge_end_event(o, False, now)
        self._final_cleanup(o, TS_READY, False)

    cdef void _bridge_end_event(self, Offer o, bint bridged, long long now):
        self._ev(S.ACTION_BRIDGE_AGENT_END,
                 [("CC-Queue", o.queue), ("CC-Action", None), ("CC-Hangup-Cause", self._orig_cause(o)),
                  ("CC-Agent", o.agent), ("CC-Agent-System", o.agent_system),
                  ("CC-Agent-UUID", o.answered_uuid), ("CC-Agent-Bridged", "true" if bridged else "false"),
                  ("CC-Agent-Called-Time", self._called_time(o)),
                  ("CC-Agent-Answered-Time", o.answered_time), ("CC-Member-Joined-Time", o.joined_epoch),
                  ("CC-Bridge-Terminated-Time", now), ("CC-Member-UUID", o.member_uuid),
                  ("CC-Member-Session-UUID", o.member_session_uuid), ("CC-Member-CID-Name", o.cid_name),
                  ("CC-Member-CID-Number", o.cid_number)])

    cdef str _orig_cause(self, Offer o):
        """W18: the hangup cause in bridge-agent-end / member-queue-end is the originate result."""
        return S.HANGUP_NONE if _low(o.agent_type) == LOW_UUID_STANDBY else S.HANGUP_SUCCESS

    def offer_ended(self, long long offer_id, long long now):
        """§5.6 after a bridged call: agent talk_time/last_bridge_end, member row deleted,
        bridge-agent-end + member-queue-end (Terminated), final cleanup (Idle after On Demand)."""
        self._touch(now)
        cdef Offer o = self._live(offer_id, P_BRIDGED)
        cdef Member m = o.m
        cdef Agent a = o.a
        cdef dict cols
        self._bridge_end_event(o, True, now)
        if a.instance_id == o.agent_system:
            cols = {}
            if _low(a.type) != LOW_UUID_STANDBY:
                a.uuid = ""
                cols["uuid"] = ""
            a.talk_time += now - a.last_bridge_start
            a.last_bridge_end = now
            cols["last_bridge_end"] = now
            cols["talk_time"] = a.talk_time
            self._ja(a, cols)
            self._reindex_agent(a, W_LBE | W_TALK)
        if not m.deleted and m.instance_id == self.instance_id:
            self._delete_member(m)
        self._ev(S.ACTION_MEMBER_QUEUE_END,
                 [("CC-Queue", o.queue), ("CC-Action", None), ("CC-Hangup-Cause", self._orig_cause(o)),
                  ("CC-Cause", S.CAUSE_TERMINATED), ("CC-Agent", o.agent), ("CC-Agent-System", o.agent_system),
                  ("CC-Agent-UUID", o.answered_uuid), ("CC-Agent-Called-Time", self._called_time(o)),
                  ("CC-Agent-Answered-Time", o.answered_time), ("CC-Member-Leaving-Time", now),
                  ("CC-Member-Joined-Time", o.joined_epoch), ("CC-Member-UUID", o.member_uuid),
                  ("CC-Member-Session-UUID", o.member_session_uuid), ("CC-Member-CID-Name", o.cid_name),
                  ("CC-Member-CID-Number", o.cid_number)])
        self._final_cleanup(o, TS_READY, True)

    def offer_failed(self, long long offer_id, cause, long long now):
        """§5.7 + §5.8: the originate failed with `cause` (delays, no-answer counting,
        max-no-answer status change, bridge-agent-fail, tiers, agent Waiting)."""
        self._touch(now)
        cdef Offer o = self._live(offer_id, P_RINGING)
        cdef Member m = o.m
        cdef Agent a = o.a
        cdef long long delay = 0
        cdef bint no_answer = False
        cdef object tier_result = TS_READY
        cdef dict cols
        if (not m.deleted and m.serving_agent == o.agent and m.serving_system == o.agent_system
                and m.instance_id == self.instance_id):
            cols = {"serving_agent": "", "serving_system": ""}
            if m.state == MS_TRYING:
                m.state = MS_WAITING
                cols["state"] = MS_WAITING
            m.serving_agent = ""
            m.serving_system = ""
            self._jm(m, cols)
            self._msync(m)
            if m.state == MS_WAITING:
                self._pending.append(m)
        if cause == S.HANGUP_LOSE_RACE or cause == S.HANGUP_ORIGINATOR_CANCEL:
            delay = 0
        elif cause == S.HANGUP_USER_BUSY or cause == S.HANGUP_NORMAL_CIRCUIT_CONGESTION:
            delay = o.snap_busy
        elif cause == S.HANGUP_CALL_REJECTED:
            delay = o.snap_reject
        elif cause == S.HANGUP_USER_NOT_REGISTERED:
            delay = S.USER_NOT_REGISTERED_DELAY
        else:
            delay = o.snap_noans
            no_answer = True
            tier_result = TS_NO_ANSWER
        if no_answer:
            if a.instance_id == o.agent_system:
                a.no_answer_count += 1
                self._ja(a, {"no_answer_count": a.no_answer_count})
            if o.snap_max_no_answer > 0 and o.snap_nac + 1 >= o.snap_max_no_answer:
                self._ev(S.ACTION_AGENT_MAX_NO_ANSWER,
                         [("CC-Agent", o.agent), ("CC-Action", None),
                          ("CC-Agent-No-Answer-Count", o.snap_max_no_answer),
                          ("CC-Agent-No-Answer-Status", o.no_answer_status),
                          ("CC-Member-UUID", o.member_uuid), ("CC-Member-Session-UUID", o.member_session_uuid)])
                if o.no_answer_status is not None and not a.deleted:
                    self._set_status(a, o.no_answer_status, now)
        if delay > 0:
            a.ready_time = now + delay
            a.instance_id = SINGLE_BOX
            self._ja(a, {"ready_time": a.ready_time, "instance_id": SINGLE_BOX})
        self._ev(S.ACTION_BRIDGE_AGENT_FAIL,
                 [("CC-Queue", o.queue), ("CC-Action", None), ("CC-Hangup-Cause", cause),
                  ("CC-Agent", o.agent), ("CC-Agent-System", o.agent_system),
                  ("CC-Agent-Called-Time", self._called_time(o)), ("CC-Agent-Aborted-Time", now),
                  ("CC-Member-UUID", o.member_uuid), ("CC-Member-Session-UUID", o.member_session_uuid),
                  ("CC-Member-CID-Name", o.cid_name), ("CC-Member-CID-Number", o.cid_number),
                  ("CC-Member-Joined-Time", o.joined_epoch)])
        self._final_cleanup(o, tier_result, False)

    def offer_withdrawn(self, long long offer_id, long long now, held_elsewhere=None):
        """A ringing offer that never reached FreeSWITCH (cluster: the agent's claim failed). Undoes
        exactly what the offer did, no penalty: the agent's state (as before any reservation) and
        last_offered_call, the offering tier's state, the tiers it set Standby, the member's claim
        (back to Waiting; ring members keep their marker) and its ring-progressively / top-down
        channel variables. Each value is restored only if it still holds what the offer wrote.

        ``held_elsewhere`` (default: whether agent_hold holds the agent now): True -> the holder
        owns the agent's row and its events, so nothing is journaled for the agent or its tiers and
        no event is fired; False -> the agent/tier restorations are journaled and a compensating
        ``agent-state-change`` (the restored state) is fired, so consumers that saw `Receiving` do
        not keep it. No bridge-agent-fail (no leg existed), nothing more about agent-offering. The
        member's row changes are always journaled (this node owns its queue)."""
        self._touch(now)
        cdef Offer o = self._live(offer_id, P_RINGING)
        cdef Member m = o.m
        cdef Agent a = o.a
        cdef Tier t
        cdef dict cols
        cdef bint quiet = a.held if held_elsewhere is None else bool(held_elsewhere)
        cdef int code = _scode(o.strategy)
        o.phase = P_DONE
        self._offers.pop(o.offer_id, None)
        if o in m.offers:
            m.offers.remove(o)
        # the member
        if not m.deleted and m.instance_id == self.instance_id:
            if m.mq is not None:
                self._bk_pre(m.mq)  # the channel variables below gate ring-progressively
            cols = {}
            if (code != K_RINGALL and code != K_RINGPROG and m.state == MS_TRYING
                    and m.serving_agent == o.agent and m.serving_system == o.agent_system):
                m.state = MS_WAITING
                m.serving_agent = ""
                m.serving_system = ""
                cols = {"state": MS_WAITING, "serving_agent": "", "serving_system": ""}
            if m.session_uuid:
                if code == K_RINGPROG and m.has_loc and m.last_originated == o.created:
                    m.has_loc = o.prev_has_loc
                    m.last_originated = o.prev_lo
                if code == K_TD and m.td_level == o.level and m.td_pos == o.position:
                    m.td_level = o.prev_td_level
                    m.td_pos = o.prev_td_pos
            if cols:
                self._jm(m, cols)
            self._msync(m)
            if m.in_idx:
                self._pending.append(m)
        # the agent's tiers
        if not a.deleted:
            t = self._atier(a, o.queue)
            if t is not None and t.state == TS_OFFERING:
                t.state = o.prev_tier_state
                if not quiet:
                    self._jt(t, {"state": t.state})
                self._fsync(t)
            for x in a.tiers:
                t = <Tier>x
                if t.sb:
                    t.sb = False
                    if t.state == TS_STANDBY:
                        t.state = TS_READY
                        if not quiet:
                            self._jt(t, {"state": TS_READY})
                        self._fsync(t)
        # the agent
        if a.offer is o:
            a.offer = None
        cols = {}
        if a.state == AS_RECEIVING:
            a.state = o.prev_state
            cols["state"] = a.state
        if a.last_offered_call == o.created and o.prev_loc != o.created:
            a.last_offered_call = o.prev_loc
            cols["last_offered_call"] = o.prev_loc
            self._rr_update(a)
            self._reindex_agent(a, W_LOC)
        self._async(a)
        if cols and not quiet and not a.deleted:
            self._ja(a, cols)
            if "state" in cols:
                self._state_ev(a.name, a.state)

    cdef void _final_cleanup(self, Offer o, object tier_result, bint bridged):
        """§5.8: tier of Q back to the result, Standby tiers elsewhere back to Ready, agent
        Waiting (Idle after a bridged call taken in Available (On Demand))."""
        cdef Agent a = o.a
        cdef Member m = o.m
        cdef Tier t
        if not a.deleted:
            for x in a.tiers:
                t = <Tier>x
                t.sb = False
                if t.queue == o.queue:
                    if t.state == TS_ACTIVE or t.state == TS_STANDBY or t.state == TS_OFFERING:
                        t.state = tier_result
                        self._jt(t, {"state": tier_result})
                        self._fsync(t)
                elif t.state == TS_STANDBY:
                    t.state = TS_READY
                    self._jt(t, {"state": TS_READY})
                    self._fsync(t)
        state = AS_IDLE if (bridged and _low(o.snap_status) == LOW_ON_DEMAND) else AS_WAITING
        a.state = state
        self._ja(a, {"state": state})
        if a.offer is o:
            a.offer = None
        self._async(a)
        if not a.deleted:
            self._state_ev(a.name, state)
        o.phase = P_DONE
        self._offers.pop(o.offer_id, None)
        if o in m.offers:
            m.offers.remove(o)
        self._msync(m)

    # =========================================================================================
    # outputs and introspection

    def drain_journal(self):
        """Row changes since the last drain: (table, 'insert'|'update'|'delete', key, columns).
        Keys: agents (name,), tiers (queue, agent), members (uuid,)."""
        out = self._journal
        self._journal = []
        return out

    def drain_events(self):
        """CC events since the last drain: (CC-Action, {header: value}) in §6.2 order."""
        out = self._events
        self._events = []
        return out

    def live_offers(self):
        """Live offers in creation order."""
        return [self._offers[k] for k in sorted(self._offers)]

    def member_offers(self, member_uuid):
        """Live offers of one member."""
        m = self._members.get(member_uuid)
        return [] if m is None else list((<Member>m).offers)

    def agent_offer(self, name):
        """The agent's live offer, or None."""
        a = self._agents.get(name)
        return None if a is None else (<Agent>a).offer

    def member_count(self, queue):
        """Rows of `queue` in Waiting or Trying (what members-count reports)."""
        return self._count_wt.get(queue, 0)

    def member_summary(self):
        """``({(queue, state): rows}, {queue: earliest wait start})`` over every member row, the
        wait start being ``rejoined_epoch or joined_epoch`` of rows in Waiting or Trying: what a
        metrics scrape needs, without building 20,000 row dicts."""
        cdef dict counts = {}
        cdef dict start = {}
        cdef Member m
        cdef long long t
        for x in self._members.values():
            m = <Member>x
            key = (m.queue, m.state)
            counts[key] = counts.get(key, 0) + 1
            if m.state == MS_WAITING or m.state == MS_TRYING:
                t = m.rejoined_epoch if m.rejoined_epoch else m.joined_epoch
                old = start.get(m.queue)
                if old is None or t < <long long>old:
                    start[m.queue] = t
        return counts, start

    def _selfcheck(self):
        """Tests only: the incremental pass state against a recomputation from scratch, at the
        second readiness was last evaluated. Returns the differences (empty: consistent)."""
        cdef list out = []
        cdef Agent a
        cdef Tier t
        cdef Queue q
        cdef dict count = {}
        cdef long long r = self._rnow
        if r == NO_ENTRY:
            return out
        for x in self._agents.values():
            a = <Agent>x
            ready = bool(a.in_free and self._time_ok(a, r))
            if ready != bool(a.in_ready):
                out.append(f"agent {a.name}: in_ready {bool(a.in_ready)}, expected {ready}")
            if ready:
                for y in a.tiers:
                    t = <Tier>y
                    if t.kq is not None and _offerable(t) and not (t.kq.skip_ext and a.external_calls_count > 0):
                        count[t.kq] = count.get(t.kq, 0) + 1
        for x in self._queues.values():
            q = <Queue>x
            if q.nready != count.get(q, 0):
                out.append(f"queue {q.name}: nready {q.nready}, expected {count.get(q, 0)}")
            if (q in self._hot_qs) != bool(count.get(q, 0) and q.members and not q.suspended):
                out.append(f"queue {q.name}: in hot set {q in self._hot_qs}, members {len(q.members)}")
            if (q in self._app_qs) != bool(q.inapp and not q.suspended):
                out.append(f"queue {q.name}: in timer set {q in self._app_qs}, inapp {len(q.inapp)}")
        for x in self._hot_qs:
            if self._queues.get((<Queue>x).name) is not x:
                out.append(f"removed queue {(<Queue>x).name} in the hot set")
        return out

    def stats(self):
        return {"agents": len(self._agents), "members": len(self._members), "queues": len(self._queues),
                "offers": len(self._offers), "free_agents": len(self._free)}
