# cython: language_level=3, boundscheck=False, wraparound=False
"""The simulated channel as a typed extension type (optional: ``ccfast.sim.channel`` keeps the
Python class, ``PyChannel``, as the reference and uses this one when it is built).

Same attributes, methods and bytes as ``ccfast.sim.channel.PyChannel`` (tests/test_sim_chan.py
runs whole calls through both and compares every byte the listeners get). What the switch does
with a channel dozens of times per call — set variables, render the state, profile and variable
lines of an event, fire a channel event through the listeners' filters — runs here on typed
fields instead of attribute look-ups in the interpreter.
"""

from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.object cimport PyObject

from ccfast.sim.events import Block, ChanEvent, line
from ccfast.sim import channel as _py

cdef dict STATE_NUMBERS = _py.STATE_NUMBERS
cdef list _CODECS = _py._CODECS
cdef dict _STATE_GET = _py._STATE_GET
cdef bytes _CODEC_LINES = _py._CODEC_LINES
cdef dict _HEADS = _py._HEADS
cdef Py_ssize_t _HEADS_MAX = _py._HEADS_MAX
cdef object _profile_templates = _py._profile_templates
cdef tuple _CONST_HEAD = _py.PyChannel._CONST_PROFILE[:-2]
cdef object _render = line


cdef class Channel:
    """One simulated call leg (see ``ccfast.sim.channel.PyChannel``)."""

    cdef public str uuid, name, direction, state, call_state, answer_state, call_uuid, other_type, role
    cdef public object hangup_cause
    cdef public int state_number, session_id
    cdef public bint hit_dialplan, bridge_a, socket_gone, in_socket, parked, gone
    cdef public dict profile, vars
    cdef public long long created_us, answered_us, progress_us, progress_media_us, hangup_us, bridged_us
    cdef public object other, bridged, caller_spec, transfer_source, loopback_peer, socket, record
    cdef public object profile_obj
    cdef public list app_stack, msg_queue, listeners, timers
    cdef public object _profile_block, _vars_block, _vars_plain, _state_plain, _state_mid, _other_block
    cdef public object _state_block
    cdef public dict _vlines, _heads, _last_plain
    cdef public list _vpending
    cdef dict __dict__
    cdef object __weakref__

    _CONST_PROFILE = _py.PyChannel._CONST_PROFILE

    def __init__(self, str uuid, str name, *, str direction, str destination, str context, str cid_name,
                 str cid_number, str source, int session_id, hit_dialplan,
                 str callee_name="Outbound Call", str callee_number=""):
        self.uuid = uuid
        self.name = name
        self.direction = direction
        self.state = "CS_INIT"
        self.state_number = 2
        self.call_state = "DOWN"
        self.answer_state = "ringing"
        self.hit_dialplan = hit_dialplan
        self.call_uuid = uuid
        self.hangup_cause = None
        self.profile = {
            "Direction": direction, "Logical-Direction": direction, "Dialplan": "xml",
            "Caller-ID-Name": cid_name, "Caller-ID-Number": cid_number,
            "Orig-Caller-ID-Name": cid_name, "Orig-Caller-ID-Number": cid_number,
            "Callee-ID-Name": callee_name, "Callee-ID-Number": callee_number or context,
            "ANI": cid_number, "Destination-Number": destination, "Unique-ID": uuid,
            "Source": source, "Context": context, "Channel-Name": name,
        }
        self.created_us = _py.now_us()
        self.answered_us = self.progress_us = self.progress_media_us = self.hangup_us = self.bridged_us = 0
        self.vars = {}
        self.other = self.bridged = None
        self.bridge_a = self.socket_gone = False
        self.caller_spec = None
        self.transfer_source = None
        self.other_type = ""
        self.loopback_peer = None
        self.session_id = session_id
        self.app_stack = []
        self.msg_queue = []
        self.in_socket = self.parked = False
        self.socket = None
        self.listeners = []
        self.role = "plain"
        self.record = None
        self.profile_obj = None
        self.timers = []
        self.gone = False
        self._profile_block = self._vars_block = self._vars_plain = None
        self._state_plain = self._state_mid = self._other_block = self._state_block = None
        self._vlines = {}
        self._vpending = []
        self._heads = {}
        self._last_plain = {}

    # -- mutation ---------------------------------------------------------------------------
    cpdef set_var(self, str name, value):
        if value is None or value == "":
            if name in self.vars:
                del self.vars[name]
                del self._vlines[name]
                self._vars_block = self._vars_plain = None
            return
        self.vars[name] = value
        self._vlines[name] = None       # rendered by vars_plain, if ever
        self._vpending.append(name)
        self._vars_block = self._vars_plain = None

    cpdef set_vars(self, pairs):
        cdef dict vars_ = self.vars, vlines = self._vlines
        cdef list pending = self._vpending
        for k, v in pairs:
            vars_[k] = v
            vlines[k] = None
            pending.append(k)
        self._vars_block = self._vars_plain = None

    cpdef touch_profile(self):
        self._profile_block = None
        cdef Channel o
        if self.other is not None:
            o = self.other
            o._other_block = None

    def set_state(self, str state, number=None):
        self.state = state
        self.state_number = STATE_NUMBERS[state] if number is None else number

    # -- header blocks ----------------------------------------------------------------------
    def state_items(self):
        return _py.PyChannel.state_items(self)

    def state_block(self):
        key = (self.state, self.call_state, self.state_number, self.answer_state, self.hangup_cause,
               self.call_uuid)
        sb = self._state_block
        if sb is None or sb[0] != key:
            items = self.state_items()
            d = dict(items)
            sb = self._state_block = (key, Block(items, getter=d.get))
        return sb[1]

    cpdef bytes state_plain(self):
        """``state_block().plain()``, rendered from cached parts without the block."""
        cdef tuple sp = self._state_plain
        cdef tuple key
        if sp is not None:
            key = <tuple>sp[0]
            if (key[0] is self.state and key[1] is self.call_state and key[2] == self.state_number
                    and key[3] is self.answer_state and key[4] is self.hangup_cause
                    and key[5] is self.call_uuid):
                return <bytes>sp[1]
        key = (self.state, self.call_state, self.state_number, self.answer_state, self.hangup_cause,
               self.call_uuid)
        if sp is not None and sp[0] == key:
            self._state_plain = (key, sp[1])
            return <bytes>sp[1]
        mid = self._state_mid
        if mid is None:
            d = self.direction
            mid = self._state_mid = (_render("Channel-Name", self.name) + _render("Unique-ID", self.uuid)
                                     + _render("Call-Direction", d) + _render("Presence-Call-Direction", d)
                                     + _render("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false"))
        hc = self.hangup_cause
        out = b"".join((_render("Channel-State", self.state), _render("Channel-Call-State", self.call_state),
                        b"Channel-State-Number: %d\n" % self.state_number, mid,
                        _render("Channel-Call-UUID", self.call_uuid), _render("Answer-State", self.answer_state),
                        _render("Hangup-Cause", hc) if hc else b"", _CODEC_LINES))
        self._state_plain = (key, out)
        return out

    cpdef bytes _profile_plain(self, str prefix, bint other=False):
        """The bytes of ``Block(self._profile_items(prefix, other)).plain()``, from cached parts."""
        cdef PyObject* got = PyDict_GetItem(self._last_plain, prefix)
        cdef tuple last, key
        if got is not NULL:
            last = <tuple>got
            key = <tuple>last[0]
            if (<bint>key[1] == other and key[2] == self.answered_us and key[3] == self.progress_us
                    and key[4] == self.progress_media_us and key[5] == self.hangup_us
                    and key[6] == self.bridged_us and key[7] == self.transfer_source):
                return <bytes>last[1]
        key = (prefix, other, self.answered_us, self.progress_us, self.progress_media_us, self.hangup_us,
               self.bridged_us, self.transfer_source)
        out = self._render_profile(prefix, other)
        self._last_plain[prefix] = (key, out)
        return out

    cpdef bytes _render_profile(self, str prefix, bint other):
        cdef tuple parts
        cdef PyObject* got = PyDict_GetItem(self._heads, prefix)
        cdef dict p
        if got is NULL:   # what does not change for this channel and prefix, rendered once
            p = self.profile
            key = (prefix, *[p[k] for k in _CONST_HEAD])
            head = _HEADS.get(key)
            if head is None:
                if len(_HEADS) >= _HEADS_MAX:
                    _HEADS.clear()
                head = _HEADS[key] = b"".join([_render(prefix + k, p[k]) for k in _CONST_HEAD])
            key = (prefix, p["Context"], p["Channel-Name"])
            ctx = _HEADS.get(key)
            if ctx is None:
                if len(_HEADS) >= _HEADS_MAX:
                    _HEADS.clear()
                ctx = _HEADS[key] = (_render(prefix + "Context", p["Context"])
                                     + _render(prefix + "Channel-Name", p["Channel-Name"]))
            parts = (head + _render(prefix + "Unique-ID", p["Unique-ID"]) + _render(prefix + "Source", p["Source"]),
                     ctx) + _profile_templates(prefix)
            self._heads[prefix] = parts
        else:
            parts = <tuple>got
        cdef long long c = self.created_us
        t = (<bytes>parts[4]) % (c, c, self.answered_us, self.progress_us, self.progress_media_us,
                                 self.hangup_us, self.bridged_us)
        if other:
            return b"".join((parts[0], parts[1], t))
        ts = self.transfer_source
        if ts:
            return b"".join((parts[0], _render(prefix + "Transfer-Source", ts), parts[1], parts[3], t))
        return b"".join((parts[0], parts[1], parts[2], t))

    def _profile_items(self, prefix, other=False):
        return _py.PyChannel._profile_items(self, prefix, other)

    def profile_block(self):
        b = self._profile_block
        if b is None:
            b = self._profile_block = Block(plain=self._profile_plain("Caller-"),
                                            src=lambda: self._profile_items("Caller-"), prefix="Caller-")
        return b

    def other_block(self):
        o = self.other
        if o is None:
            return None
        b = self._other_block
        if b is None:
            b = self._other_block = _other_block(self)
        return b

    cpdef bytes other_plain(self):
        """``other_block().plain()`` (the channel has an other leg)."""
        b = self._other_block
        if b is None:
            b = self._other_block = _other_block(self)
        return b.plain()

    cpdef bytes vars_plain(self):
        """``vars_block().plain()``, without the block."""
        p = self._vars_plain
        cdef dict vlines, vars_
        cdef list pending
        if p is None:
            vlines = self._vlines
            pending = self._vpending
            if pending:
                vars_ = self.vars
                for k in pending:
                    if vlines.get(k, 0) is None:
                        vlines[k] = _render("variable_" + k, vars_[k])
                del pending[:]
            p = self._vars_plain = b"".join(vlines.values())
        return p

    def state_value(self, name):
        g = _STATE_GET.get(name)
        return None if g is None else g(self)

    def vars_block(self):
        b = self._vars_block
        if b is None:
            snap = self.vars.copy()
            b = self._vars_block = Block(
                plain=self.vars_plain(),
                src=lambda: [("variable_" + k, v) for k, v in snap.items()],
                getter=lambda n: snap.get(n[9:]) if n.startswith("variable_") else None)
        return b

    def snapshot_blocks(self, *, with_vars=True):
        return _py.PyChannel.snapshot_blocks(self, with_vars=with_vars)

    def data_profile_block(self):
        return _py.PyChannel.data_profile_block(self)

    # -- queries ----------------------------------------------------------------------------
    @property
    def answered(self):
        return self.answered_us != 0

    @property
    def alive(self):
        return not self.gone and self.hangup_cause is None

    def header_value(self, name):
        return _py.PyChannel.header_value(self, name)

    def current_app(self):
        stack = self.app_stack  # wraparound is off in this module: no negative index
        return stack[len(stack) - 1] if stack else None


cdef object _other_block(Channel ch):
    cdef Channel o = ch.other
    ot = ch.other_type
    return Block(plain=_render("Other-Type", ot) + o._profile_plain("Other-Leg-", True),
                 src=lambda: [("Other-Type", ot)] + o._profile_items("Other-Leg-", other=True),
                 prefix="Other-")


cdef bytes _join_lines(list items):
    return b"".join([_render(k, v) for k, v in items])


def chan_plain_frame(ev):
    """``ChanEvent.plain_frame`` for a channel of this type (same bytes)."""
    f = ev._plain
    if f is not None:
        return f
    cdef Channel ch = ev.ch
    pre, post = ev.pre, ev.post
    cdef list parts = [b"", ev.env.plain()]
    if pre:
        parts.append(_join_lines(pre))
    parts.append(ch.state_plain())
    parts.append(ch._profile_plain("Caller-", False))
    if ch.other is not None:
        parts.append(ch.other_plain())
    if ev.with_vars:
        parts.append(ch.vars_plain())
    if post:
        parts.append(_join_lines(post))
    parts.append(b"\n")
    cdef Py_ssize_t n = 0
    for x in parts:
        n += PyBytes_GET_SIZE(<bytes>x)
    parts[0] = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % n
    f = ev._plain = b"".join(parts)
    return f


def fire_chan(sw, str name, Channel ch, calling, pre=None, post=None, bint with_vars=True):
    """``Switch.fire_chan`` (``PySwitch.fire_chan``, the reference) for channels of this type."""
    _fire(sw, name, ch, calling, pre, post, with_vars)


cdef _fire(sw, str name, Channel ch, calling, pre, post, bint with_vars):
    hist = sw.history
    if hist is not None:
        hist.setdefault(ch.uuid, []).append(name)
    cdef dict ec = sw.event_counts
    cdef PyObject* n = PyDict_GetItem(ec, name)
    ec[name] = 1 if n is NULL else <object>n + 1
    cdef list targets = []
    for l in sw.listeners:
        if (_wants(l, name) if _own_checks(l) else l.wants(name, "", ch)):
            targets.append(l)
    if ch.listeners:
        for l in ch.listeners:
            if (_wants_own(l, name) if _own_checks(l) else l.wants_own(name, "")):
                targets.append(l)
    if not targets:
        return
    cdef dict stats = sw.stats
    stats["events_built"] += 1
    host = sw.host
    seq = host.seq + 1
    host.seq = seq      # the event's number, whether or not anyone takes it
    ev = None
    for t in targets:
        # t.offer(ev), with filters decided from the channel: the event is assembled (its
        # envelope dated) only when a listener takes it
        if t.closed:
            continue
        if t.filters:
            ok = (_passes_chan(t, name, ch, pre, post, with_vars) if _own_checks(t)
                  else t.passes_chan(name, ch, pre, post, with_vars))
            if ok is None:      # a filter on an envelope header: needs the event
                if ev is None:
                    ev = ChanEvent(name, ch, host.envelope_block(name, calling, seq), pre, post, with_vars)
                ok = t._passes(ev)
            if not ok:
                t.sim.stats["events_filtered"] += 1
                continue
        if ev is None:
            ev = ChanEvent(name, ch, host.envelope_block(name, calling, seq), pre, post, with_vars)
        if t.fmt == "json":
            t.push(ev.json_frame(), event=True)
        else:
            t.push(chan_plain_frame(ev), event=True)


# -- listeners' checks without a Python call for the simulator's own connections -------------

cdef dict _OWN_CHECKS = {}     # listener type -> it uses EslConnection's wants/wants_own/passes_chan
cdef object _Esl = None


cdef bint _own_checks(t):
    """The listener's type has EslConnection's own wants, wants_own and passes_chan (the C copies
    below give the same answers)."""
    global _Esl
    cls = type(t)
    cdef PyObject* got = PyDict_GetItem(_OWN_CHECKS, cls)
    if got is not NULL:
        return <bint><object>got
    if _Esl is None:
        from ccfast.sim.server import EslConnection
        _Esl = EslConnection
    ok = (getattr(cls, "wants", None) is _Esl.wants and getattr(cls, "wants_own", None) is _Esl.wants_own
          and getattr(cls, "passes_chan", None) is _Esl.passes_chan)
    _OWN_CHECKS[cls] = ok
    return ok


cdef object _MYEVENTS = None


cdef bint _wants(t, str name):
    # EslConnection.wants(name, "", ch)
    if t.fmt is None or t.my_uuid is not None:
        return False
    if t.all_events:
        return True
    if name == "CUSTOM":
        return t.all_custom or "" in t.subclasses
    return name in t.names


cdef bint _wants_own(t, str name):
    # EslConnection.wants_own(name, "")
    global _MYEVENTS
    if t.fmt is None:
        return False
    if _MYEVENTS is None:
        from ccfast.sim.server import MYEVENTS
        _MYEVENTS = MYEVENTS
    if name in _MYEVENTS or name in t.names or t.all_events:
        return True
    if name == "CUSTOM":
        return t.all_custom or "" in t.subclasses
    return False


from ccfast.sim.events import NEED_ENVELOPE, chan_header as _py_chan_header
from ccfast.sim.events import _ENVELOPE_NAMES


cdef object _chan_header(str h, str name, Channel ch, pre, post, bint with_vars):
    # events.chan_header, with the usual case (a variable) read here
    if not h.startswith("variable_") or h in _ENVELOPE_NAMES:
        return _py_chan_header(h, name, ch, pre, post, with_vars)
    if pre:
        for k, x in pre:
            if k == h:
                return x
    v = ch.vars.get(h[9:]) if with_vars else None
    if v is None and post:
        for k, x in post:
            if k == h:
                return x
    return v


cdef object _passes_chan(t, str name, Channel ch, pre, post, bint with_vars):
    # EslConnection.passes_chan
    filters = t.filters
    sp = t._fsplit
    if sp is None or sp[0] is not filters or sp[1] != len(filters):
        return t.passes_chan(name, ch, pre, post, with_vars)    # (re)builds its view of the filters
    if name in sp[2]:
        return True
    for h, v, rx in sp[3]:
        got = _chan_header(h, name, ch, pre, post, with_vars)
        if got is None:
            continue
        if got is NEED_ENVELOPE:
            return None
        if rx is not None:
            if rx.search(got):
                return True
        elif got == v:
            return True
    return False



# -- the switch's per-call flows on typed channels ---------------------------------------------
# Line for line the methods of ccfast.sim.switch.Switch they replace (PySwitch keeps those; the
# whole-call comparison in tests/test_sim_chan.py runs both). Bound by bind_switch().

cdef object C_HANGUP, C_HANGUP_DONE, C_UNBRIDGE, C_STATE, C_PARK, C_UNPARK, C_ANSWER, C_EXEC_DONE
cdef object C_EXEC_BRIDGE, C_BRIDGE
cdef dict Q850
cdef object CallRecord, LegRecord, _release, now_us
cdef dict _sw_ns
cdef object _time, sample, RunningApp, C_EXEC, C_PLAY_START, _apps


def bind_switch(ns):
    """Take the switch module's constants and helpers (it imports this module)."""
    global C_HANGUP, C_HANGUP_DONE, C_UNBRIDGE, C_STATE, C_PARK, C_UNPARK, C_ANSWER, C_EXEC_DONE
    global C_EXEC_BRIDGE, C_BRIDGE, Q850, CallRecord, LegRecord, _release, now_us
    global _time
    C_HANGUP, C_HANGUP_DONE, C_UNBRIDGE, C_STATE = ns["C_HANGUP"], ns["C_HANGUP_DONE"], ns["C_UNBRIDGE"], ns["C_STATE"]
    C_PARK, C_UNPARK, C_ANSWER, C_EXEC_DONE = ns["C_PARK"], ns["C_UNPARK"], ns["C_ANSWER"], ns["C_EXEC_DONE"]
    C_EXEC_BRIDGE, C_BRIDGE = ns["C_EXEC_BRIDGE"], ns["C_BRIDGE"]
    Q850, CallRecord, LegRecord, _release = ns["Q850"], ns["CallRecord"], ns["LegRecord"], ns["_release"]
    global _sw_ns
    _sw_ns = ns     # new_uuid is looked up there at each use: tests replace it
    global sample, RunningApp, C_EXEC, C_PLAY_START, _apps
    sample, RunningApp, C_EXEC, C_PLAY_START = ns["sample"], ns["RunningApp"], ns["C_EXEC"], ns["C_PLAY_START"]
    now_us = _py.now_us
    import time
    _time = time.time


cdef inline bint _alive(Channel ch):
    return not ch.gone and ch.hangup_cause is None


def set_state_event(sw, Channel ch, str state, number=None):
    ch.state = state
    ch.state_number = STATE_NUMBERS[state] if number is None else number
    _fire(sw, "CHANNEL_STATE", ch, C_STATE, None, None, False)


def park(sw, Channel ch):
    ch.parked = True
    _fire(sw, "CHANNEL_PARK", ch, C_PARK, None, None, True)


def unpark(sw, Channel ch):
    if ch.parked:
        ch.parked = False
        _fire(sw, "CHANNEL_UNPARK", ch, C_UNPARK, None, None, True)


def mark_answered(sw, Channel ch, state=None, number=None, call_state=None):
    if ch.answered_us != 0 or not _alive(ch):
        return False
    ch.answered_us = now_us()
    ch.answer_state = "answered"
    if state:
        ch.state = state
        ch.state_number = STATE_NUMBERS[state] if number is None else number
    if call_state:
        ch.call_state = call_state
    ch.touch_profile()
    ch.set_var("endpoint_disposition", "ANSWER")
    _fire(sw, "CHANNEL_ANSWER", ch, C_ANSWER, None, None, True)
    ch.call_state = "ACTIVE"
    rec = ch.record
    if isinstance(rec, CallRecord) and ch.role == "member":
        rec.answered_at = sw.sched.now()
    return True


def final_vars(sw, Channel ch):
    cdef double secs = (ch.hangup_us - ch.created_us) / 1e6
    cdef double bill = (ch.hangup_us - ch.answered_us) / 1e6 if ch.answered_us else 0.0
    ch.set_vars([("duration", str(int(secs))), ("billsec", str(int(bill))),
                 ("mduration", str(int(secs * 1000))), ("billmsec", str(int(bill * 1000))),
                 ("end_epoch", str(ch.hangup_us // 1_000_000)),
                 ("end_uepoch", str(ch.hangup_us))])


def hangup(sw, Channel ch, str cause="NORMAL_CLEARING"):
    if not _alive(ch):
        return
    # a ringing originate leg: its job must learn the cause
    job_leg = sw._ringing_leg_of(ch)
    ch.hangup_cause = cause
    ch.hangup_us = now_us()
    ch.answer_state = "hangup"
    ch.state_number = 10
    ch.touch_profile()
    for t in ch.timers:
        t.cancel()
    ch.timers.clear()
    for app in ch.app_stack:
        if app.timer:
            app.timer.cancel()
    ch.app_stack.clear()
    ch.msg_queue.clear()
    ch.set_vars([("hangup_cause", cause), ("hangup_cause_q850", str(Q850.get(cause, 16)))])
    _fire(sw, "CHANNEL_HANGUP", ch, C_HANGUP, None, None, True)
    cdef Channel peer
    if ch.bridged is not None:
        peer = ch.bridged
        ch.bridged = None
        peer.bridged = None
        peer_is_b = ch.bridge_a
        if ch.bridge_a:
            _fire(sw, "CHANNEL_UNBRIDGE", ch, C_UNBRIDGE, sw._bridge_ids(ch, peer), None, True)
        ch.set_var("bridge_hangup_cause", cause)
        if peer_is_b:
            sw.later(0.001, sw._bridged_b_after, peer, cause)
        else:
            sw.later(sw.t.hangup_propagation, sw._bridged_a_after, peer, ch, cause)
    set_state_event(sw, ch, "CS_HANGUP", 10)
    ch.call_state = "HANGUP"
    set_state_event(sw, ch, "CS_REPORTING", 11)
    sw._final_vars(ch)
    _fire(sw, "CHANNEL_HANGUP_COMPLETE", ch, C_HANGUP_DONE, [("Hangup-Cause", cause)], None, True)
    ch.gone = True
    sw.channels.pop(ch.uuid, None)
    lp = ch.loopback_peer
    if lp is not None and lp.alive:
        sw.later(0.0, sw.hangup, lp, cause)
    if ch.socket is not None:
        ch.socket.on_hangup(ch)
    for l in list(ch.listeners):
        l.on_channel_gone(ch)
    rec = ch.record
    now = sw.sched.now()
    if isinstance(rec, CallRecord) and ch.role == "member":
        rec.ended_at = now
        rec.hangup_cause = cause
        rec.done.set()
    elif isinstance(rec, LegRecord) and ch.role == "agent":
        rec.ended_at = now
        rec.cause = cause
        rec.done.set()
    if job_leg is not None:
        job, ls = job_leg
        sw._leg_fail(job, ls, cause)
    _release(ch)


def leave_socket(sw, Channel ch):
    """The socket app returns (bridge, resume or close): UNPARK, EXECUTE_COMPLETE socket."""
    if not ch.in_socket:
        return
    ch.in_socket = False
    unpark(sw, ch)
    cdef dict v = ch.vars
    resp = v.get("current_application_response", "_none_")
    _fire(sw, "CHANNEL_EXECUTE_COMPLETE", ch, C_EXEC_DONE, None, [
        ("Application", "socket"), ("Application-Data", v.get("socket_data", "")),
        ("Application-Response", resp), ("Application-UUID", v.get("socket_app_uuid", ""))], True)


def bridge_step1(sw, Channel a, Channel b):
    if not (_alive(a) and _alive(b)):
        return
    epoch = int(_time())
    cdef Channel ch, peer
    for ch, peer, role in ((a, b, "originatee"), (b, a, "originator")):
        ts = f"{epoch}:{_sw_ns['new_uuid']()}:uuid_br:{peer.uuid}"
        ch.transfer_source = ts
        ch.other, ch.other_type = peer, role
        ch.set_vars([("transfer_history", ts), ("transfer_source", ts)])
        ch.touch_profile()
        ch._other_block = None
    sw.interrupt_apps(a)
    if a.in_socket:
        leave_socket(sw, a)
        for st in ("CS_HIBERNATE", "CS_RESET", "CS_SOFT_EXECUTE"):
            set_state_event(sw, a, st)
    else:
        unpark(sw, a)
        a.state = "CS_SOFT_EXECUTE"
        a.state_number = STATE_NUMBERS["CS_SOFT_EXECUTE"]
    # the B leg leaves its park
    if b.parked:
        unpark(sw, b)
        b.app_stack.clear()
        _fire(sw, "CHANNEL_EXECUTE_COMPLETE", b, C_EXEC_DONE, None, [
            ("Application", "park"), ("Application-Response", "_none_"),
            ("Application-UUID", b.vars.get("park_app_uuid", ""))], True)
    else:
        sw.interrupt_apps(b)
    if b.answered_us == 0:
        sw.later(sw.t.tick, sw.hangup, b, "DESTINATION_OUT_OF_ORDER")
        sw.later(sw.t.tick, sw.hangup, a, "ORIGINATOR_CANCEL")
        return
    b.state = "CS_EXECUTE"
    b.state_number = 4
    _fire(sw, "CHANNEL_EXECUTE", b, C_EXEC_BRIDGE, None,
          [("Application", "uuid_bridge"), ("Application-Data", a.uuid)], True)
    sw.later(sw.t.tick, sw._bridge_step2, a, b)



def bridge_step2(sw, Channel a, Channel b):
    if not (_alive(a) and _alive(b)):
        return
    t = now_us()
    a.bridged, b.bridged = b, a
    a.bridge_a, b.bridge_a = True, False
    a.other, a.other_type = b, "originatee"
    b.other, b.other_type = a, "originator"
    a.bridged_us = b.bridged_us = t
    a.touch_profile()
    b.touch_profile()
    a._other_block = b._other_block = None
    a.set_vars([("bridge_channel", b.name), ("bridge_uuid", b.uuid), ("signal_bond", b.uuid),
                ("last_bridge_to", b.uuid)])
    b.set_vars([("bridge_to", a.uuid), ("last_bridge_to", a.uuid), ("bridge_channel", a.name),
                ("bridge_uuid", a.uuid), ("signal_bond", a.uuid),
                ("last_bridge_role", "originatee")])
    a.state, a.state_number = "CS_SOFT_EXECUTE", 3
    b.state, b.state_number = "CS_EXCHANGE_MEDIA", 5
    _fire(sw, "CHANNEL_EXECUTE", a, C_EXEC_BRIDGE, None,
          [("Application", "uuid_bridge"), ("Application-Data", b.uuid)], True)
    _fire(sw, "CHANNEL_BRIDGE", a, C_BRIDGE, sw._bridge_ids(a, b), None, True)
    now = sw.sched.now()
    cdef Channel ch, peer
    for ch, peer in ((a, b), (b, a)):
        rec = ch.record
        if isinstance(rec, CallRecord) and ch.role == "member":
            rec.bridged_at = now
            rec.agent_uuid = peer.uuid
        elif isinstance(rec, LegRecord) and ch.role == "agent":
            rec.bridged_at = now
            rec.bridged_to = peer.uuid
    # talk time: who hangs up, and when, comes from the agent's profile
    cdef Channel agent, member
    agent = b if b.role == "agent" else a if a.role == "agent" else None
    prof = agent.profile_obj if agent is not None else None
    if prof is not None:
        talk = sample(prof.talk_time, sw.rng)
        if talk is not None:
            member = a if agent is b else b
            victim = agent if prof.hangup_by == "agent" else (member.loopback_peer or member)
            agent.timers.append(sw.later(talk, sw.hangup, victim, "NORMAL_CLEARING"))
    sw.drain_queue(a)


def bridged_a_after(sw, Channel a, Channel b, str cause):
    """The B side (agent) hung up: the A side (member) leaves the bridge (§5.1)."""
    if not _alive(a):
        return
    _fire(sw, "CHANNEL_UNBRIDGE", a, C_UNBRIDGE, sw._bridge_ids(a, b), None, True)
    a.set_var("last_bridge_hangup_cause", cause)
    a.set_var("bridge_hangup_cause", cause)
    set_state_event(sw, a, "CS_EXECUTE")
    if a.vars.get("hangup_after_bridge") == "true":
        hangup(sw, a, cause)
    elif a.vars.get("park_after_bridge") == "true":
        a.state, a.state_number = "CS_PARK", STATE_NUMBERS["CS_PARK"]
        park(sw, a)
    else:
        sw.continue_dialplan(a)




def run_app_now(sw, Channel ch, msg):
    """``Switch.run_app_now`` = ``apps.start``: answer, playback and park here (line for line
    apps.start's branches for them; apps' functions looked up at each call, as tests replace
    some), any other application there."""
    global _apps
    if _apps is None:
        from ccfast.sim import apps
        _apps = apps
    name = msg.app
    if not (name == "answer" or name == "pre_answer" or name == "playback" or name == "endless_playback"
            or name == "park"):
        _apps.start(sw, ch, msg)
        return
    if not _alive(ch):
        return
    arg = msg.arg
    app = RunningApp(name, arg, _sw_ns["new_uuid"](), msg.event_lock)
    post = [("Application", name)]
    if arg:
        post.append(("Application-Data", arg))
    post.append(("Application-UUID", app.app_uuid))
    ch.set_var("current_application", name)
    if arg:
        ch.set_var("current_application_data", arg)
    _fire(sw, "CHANNEL_EXECUTE", ch, C_EXEC, None, post, True)
    if name == "answer" or name == "pre_answer":
        mark_answered(sw, ch)
        _apps.complete(sw, ch, app, "_none_", pushed=False)
    elif name == "park":
        ch.app_stack.append(app)
        ch.set_var("park_app_uuid", app.app_uuid)
        park(sw, ch)
    else:
        ch.app_stack.append(app)
        _apps._play(sw, ch, app)     # looked up now: tests replace it
