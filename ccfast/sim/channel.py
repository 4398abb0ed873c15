"""The simulated channel: state, caller profile, variables, and its event header blocks.

Header names and order follow the captures in ``shared/fixtures/freeswitch-esl``: the channel
block (``Channel-State`` … ``Answer-State``, ``Hangup-Cause`` when hung up, codecs), the caller
profile (``Caller-*``), the other leg (``Other-Type``, ``Other-Leg-*``) while bridged, then every
channel variable as ``variable_<name>`` in the order it was first set.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .events import Block, line

if TYPE_CHECKING:  # pragma: no cover
    from .apps import RunningApp

STATE_NUMBERS = {
    "CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8,
    "CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12,
}

Q850 = {
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19,
    "CALL_REJECTED": 21, "DESTINATION_OUT_OF_ORDER": 27, "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34, "ORIGINATOR_CANCEL": 487, "LOSE_RACE": 502,
    "USER_NOT_REGISTERED": 606, "ALLOTTED_TIMEOUT": 602, "NO_ROUTE_DESTINATION": 3,
    "SUBSCRIBER_ABSENT": 20, "MANAGER_REQUEST": 503,
}

_CODECS = [
    ("Channel-Read-Codec-Name", "L16"), ("Channel-Read-Codec-Rate", "8000"),
    ("Channel-Read-Codec-Bit-Rate", "128000"), ("Channel-Write-Codec-Name", "L16"),
    ("Channel-Write-Codec-Rate", "8000"), ("Channel-Write-Codec-Bit-Rate", "128000"),
]


_STATE_GET = {
    "Channel-State": lambda c: c.state, "Channel-Call-State": lambda c: c.call_state,
    "Channel-State-Number": lambda c: str(c.state_number), "Channel-Name": lambda c: c.name,
    "Unique-ID": lambda c: c.uuid, "Call-Direction": lambda c: c.direction,
    "Presence-Call-Direction": lambda c: c.direction,
    "Channel-HIT-Dialplan": lambda c: "true" if c.hit_dialplan else "false",
    "Channel-Call-UUID": lambda c: c.call_uuid, "Answer-State": lambda c: c.answer_state,
    "Hangup-Cause": lambda c: c.hangup_cause or None,
}
_STATE_GET.update({k: (lambda c, v=v: v) for k, v in _CODECS})
_CODEC_LINES = b"".join(line(k, v) for k, v in _CODECS)


_HEADS: dict[tuple, bytes] = {}     # rendered caller-profile lines shared between channels
_HEADS_MAX = 20_000
_TEMPLATES: dict[str, tuple[bytes, bytes, bytes]] = {}


def _profile_templates(prefix: str) -> tuple[bytes, bytes, bytes]:
    """(Profile-Index 1 line, Profile-Index 2 line, the times block as a %d template) of a
    caller-profile prefix."""
    t = _TEMPLATES.get(prefix)
    if t is None:
        p = prefix.encode("ascii").replace(b"%", b"%%")
        times = b"".join(p + x + b"\n" for x in (
            b"Profile-Created-Time: %d", b"Channel-Created-Time: %d", b"Channel-Answered-Time: %d",
            b"Channel-Progress-Time: %d", b"Channel-Progress-Media-Time: %d", b"Channel-Hangup-Time: %d",
            b"Channel-Transfer-Time: 0", b"Channel-Resurrect-Time: 0", b"Channel-Bridged-Time: %d",
            b"Channel-Last-Hold: 0", b"Channel-Hold-Accum: 0", b"Screen-Bit: true", b"Privacy-Hide-Name: false",
            b"Privacy-Hide-Number: false"))
        t = _TEMPLATES[prefix] = (prefix.encode("ascii") + b"Profile-Index: 1\n",
                                  prefix.encode("ascii") + b"Profile-Index: 2\n", times)
    return t


def now_us() -> int:
    return int(time.time() * 1_000_000)


class PyChannel:
    """One simulated call leg. Mutate through the methods so cached blocks are invalidated.

    The reference implementation: ``Channel`` is the typed one of ``ccfast.sim._chan`` when it
    is built (same attributes, methods and bytes), this class otherwise."""

    def __init__(self, uuid: str, name: str, *, direction: str, destination: str,
                 context: str, cid_name: str, cid_number: str, source: str,
                 session_id: int, hit_dialplan: bool, callee_name: str = "Outbound Call",
                 callee_number: str = ""):
        self.uuid = uuid
        self.name = name
        self.direction = direction
        self.state = "CS_INIT"
        self.state_number = 2
        self.call_state = "DOWN"
        self.answer_state = "ringing"
        self.hit_dialplan = hit_dialplan
        self.call_uuid = uuid
        self.hangup_cause: str | None = None
        self.profile: dict[str, Any] = {
            "Direction": direction, "Logical-Direction": direction, "Dialplan": "xml",
            "Caller-ID-Name": cid_name, "Caller-ID-Number": cid_number,
            "Orig-Caller-ID-Name": cid_name, "Orig-Caller-ID-Number": cid_number,
            "Callee-ID-Name": callee_name, "Callee-ID-Number": callee_number or context,
            "ANI": cid_number, "Destination-Number": destination, "Unique-ID": uuid,
            "Source": source, "Context": context, "Channel-Name": name,
        }
        t = now_us()
        self.created_us = t
        self.answered_us = 0
        self.progress_us = 0
        self.progress_media_us = 0
        self.hangup_us = 0
        self.bridged_us = 0
        self.vars: dict[str, str] = {}
        self.other: PyChannel | None = None       # the other leg shown in Other-Leg-* headers
        self.bridged: PyChannel | None = None     # the live bridge peer
        self.bridge_a = False                   # this channel was the first uuid_bridge arg
        self.socket_gone = False                # outbound socket closed while an app ran
        self.caller_spec: Any = None
        self.transfer_source: str | None = None   # set by uuid_bridge (Caller-Transfer-Source)
        self.other_type = ""                    # originator / originatee
        self.loopback_peer: PyChannel | None = None
        self.session_id = session_id
        # application engine (see apps.py)
        self.app_stack: list[RunningApp] = []
        self.msg_queue: list = []
        self.in_socket = False      # the socket app is the current dialplan application
        self.parked = False
        self.socket = None          # the sim-side outbound socket session, if any
        self.listeners: list = []   # myevents listeners bound to this channel
        self.role = "plain"         # member / caller / agent / agent_b / plain
        self.record: Any = None     # the CallRecord / LegRecord this channel reports to
        self.profile_obj: Any = None
        self.timers: list = []
        self.gone = False
        self._profile_block: Block | None = None
        self._vars_block: Block | None = None
        self._vars_plain: bytes | None = None
        self._state_plain: tuple[tuple, bytes] | None = None
        self._state_mid: bytes | None = None
        self._other_block: Block | None = None
        self._state_block: tuple[tuple, Block] | None = None
        self._vlines: dict[str, bytes | None] = {}  # var name -> "variable_<name>: v\n" (None: not yet)
        self._vpending: list[str] = []          # names set since the last rendering
        self._heads: dict[str, bytes] = {}      # profile prefix -> rendered constant profile lines
        self._last_plain: dict[str, tuple] = {}  # profile prefix -> (what it depends on, bytes)

    # -- mutation ---------------------------------------------------------------------------
    def set_var(self, name: str, value: str | None) -> None:
        if value is None or value == "":
            if name in self.vars:
                del self.vars[name]
                del self._vlines[name]
                self._vars_block = self._vars_plain = None
            return
        self.vars[name] = value
        self._vlines[name] = None       # rendered by vars_plain, if ever (see there)
        self._vpending.append(name)
        self._vars_block = self._vars_plain = None

    def set_vars(self, pairs) -> None:
        vars_, vlines, pending = self.vars, self._vlines, self._vpending
        for k, v in pairs:
            vars_[k] = v
            vlines[k] = None
            pending.append(k)
        self._vars_block = self._vars_plain = None

    def touch_profile(self) -> None:
        self._profile_block = None
        if self.other is not None:
            self.other._other_block = None

    def set_state(self, state: str, number: int | None = None) -> None:
        self.state = state
        self.state_number = STATE_NUMBERS[state] if number is None else number

    # -- header blocks ----------------------------------------------------------------------
    def state_items(self) -> list[tuple[str, str]]:
        items = [
            ("Channel-State", self.state), ("Channel-Call-State", self.call_state),
            ("Channel-State-Number", str(self.state_number)), ("Channel-Name", self.name),
            ("Unique-ID", self.uuid), ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false"),
            ("Channel-Call-UUID", self.call_uuid), ("Answer-State", self.answer_state),
        ]
        if self.hangup_cause:
            items.append(("Hangup-Cause", self.hangup_cause))
        items += _CODECS
        return items

    def state_block(self) -> Block:
        key = (self.state, self.call_state, self.state_number, self.answer_state, self.hangup_cause,
               self.call_uuid)
        sb = self._state_block
        if sb is None or sb[0] != key:
            items = self.state_items()
            d = dict(items)   # its names are unique
            sb = self._state_block = (key, Block(items, getter=d.get))
        return sb[1]

    def state_plain(self) -> bytes:
        """``state_block().plain()``, rendered from cached parts without the block."""
        key = (self.state, self.call_state, self.state_number, self.answer_state, self.hangup_cause,
               self.call_uuid)
        sp = self._state_plain
        if sp is not None and sp[0] == key:
            return sp[1]
        mid = self._state_mid     # name, uuid, direction, dialplan flag: fixed for the channel
        if mid is None:
            d = self.direction
            mid = self._state_mid = (line("Channel-Name", self.name) + line("Unique-ID", self.uuid)
                                     + line("Call-Direction", d) + line("Presence-Call-Direction", d)
                                     + line("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false"))
        hc = self.hangup_cause
        out = b"".join((line("Channel-State", self.state), line("Channel-Call-State", self.call_state),
                        b"Channel-State-Number: %d\n" % self.state_number, mid,
                        line("Channel-Call-UUID", self.call_uuid), line("Answer-State", self.answer_state),
                        line("Hangup-Cause", hc) if hc else b"", _CODEC_LINES))
        self._state_plain = (key, out)
        return out

    _CONST_PROFILE = ("Direction", "Logical-Direction", "Dialplan", "Caller-ID-Name", "Caller-ID-Number",
                      "Orig-Caller-ID-Name", "Orig-Caller-ID-Number", "Callee-ID-Name",
                      "Callee-ID-Number", "ANI", "Destination-Number", "Unique-ID", "Source")

    def _profile_plain(self, prefix: str, other: bool = False) -> bytes:
        """The bytes of ``Block(self._profile_items(prefix, other)).plain()``, from cached parts."""
        key = (prefix, other, self.answered_us, self.progress_us, self.progress_media_us, self.hangup_us,
               self.bridged_us, self.transfer_source)
        last = self._last_plain.get(prefix)
        if last is not None and last[0] == key:
            return last[1]
        out = self._render_profile(prefix, other)
        self._last_plain[prefix] = (key, out)
        return out

    def _render_profile(self, prefix: str, other: bool) -> bytes:
        parts = self._heads.get(prefix)
        if parts is None:   # what does not change for this channel and prefix, rendered once
            p = self.profile
            # the lines before Unique-ID, and Context + Channel-Name, repeat from call to call
            key = (prefix, *[p[k] for k in self._CONST_PROFILE[:-2]])
            head = _HEADS.get(key)
            if head is None:
                if len(_HEADS) >= _HEADS_MAX:
                    _HEADS.clear()
                head = _HEADS[key] = b"".join([line(prefix + k, p[k]) for k in self._CONST_PROFILE[:-2]])
            key = (prefix, p["Context"], p["Channel-Name"])
            ctx = _HEADS.get(key)
            if ctx is None:
                if len(_HEADS) >= _HEADS_MAX:
                    _HEADS.clear()
                ctx = _HEADS[key] = (line(prefix + "Context", p["Context"])
                                     + line(prefix + "Channel-Name", p["Channel-Name"]))
            parts = self._heads[prefix] = (
                head + line(prefix + "Unique-ID", p["Unique-ID"]) + line(prefix + "Source", p["Source"]),
                ctx) + _profile_templates(prefix)
        head, ctx, index1, index2, times = parts
        c = self.created_us
        t = times % (c, c, self.answered_us, self.progress_us, self.progress_media_us, self.hangup_us,
                     self.bridged_us)
        if other:
            return b"".join((head, ctx, t))
        ts = self.transfer_source
        if ts:
            return b"".join((head, line(prefix + "Transfer-Source", ts), ctx, index2, t))
        return b"".join((head, ctx, index1, t))

    def _profile_items(self, prefix: str, other: bool = False) -> list[tuple[str, str]]:
        p = self.profile
        items = [(prefix + k, p[k]) for k in (
            "Direction", "Logical-Direction", "Dialplan", "Caller-ID-Name", "Caller-ID-Number",
            "Orig-Caller-ID-Name", "Orig-Caller-ID-Number", "Callee-ID-Name",
            "Callee-ID-Number", "ANI", "Destination-Number", "Unique-ID", "Source")]
        if self.transfer_source and not other:
            items.append((prefix + "Transfer-Source", self.transfer_source))
        items += [(prefix + "Context", p["Context"]), (prefix + "Channel-Name", p["Channel-Name"])]
        if not other:
            items.append((prefix + "Profile-Index", "2" if self.transfer_source else "1"))
        c = str(self.created_us)
        items += [
            (prefix + "Profile-Created-Time", c), (prefix + "Channel-Created-Time", c),
            (prefix + "Channel-Answered-Time", str(self.answered_us)),
            (prefix + "Channel-Progress-Time", str(self.progress_us)),
            (prefix + "Channel-Progress-Media-Time", str(self.progress_media_us)),
            (prefix + "Channel-Hangup-Time", str(self.hangup_us)),
            (prefix + "Channel-Transfer-Time", "0"), (prefix + "Channel-Resurrect-Time", "0"),
            (prefix + "Channel-Bridged-Time", str(self.bridged_us)),
            (prefix + "Channel-Last-Hold", "0"), (prefix + "Channel-Hold-Accum", "0"),
            (prefix + "Screen-Bit", "true"), (prefix + "Privacy-Hide-Name", "false"),
            (prefix + "Privacy-Hide-Number", "false"),
        ]
        return items

    def profile_block(self) -> Block:
        b = self._profile_block
        if b is None:
            b = self._profile_block = Block(plain=self._profile_plain("Caller-"),
                                            src=lambda: self._profile_items("Caller-"), prefix="Caller-")
        return b

    def other_block(self) -> Block | None:
        o = self.other
        if o is None:
            return None
        b = self._other_block
        if b is None:
            ot = self.other_type
            b = self._other_block = Block(
                plain=line("Other-Type", ot) + o._profile_plain("Other-Leg-", other=True),
                src=lambda: [("Other-Type", ot)] + o._profile_items("Other-Leg-", other=True),
                prefix="Other-")
        return b

    def vars_plain(self) -> bytes:
        """``vars_block().plain()``, without the block."""
        p = self._vars_plain
        if p is None:
            vlines = self._vlines
            pending = self._vpending
            if pending:
                # lines are rendered when first needed: most of a caller leg's variables, and
                # values overwritten before any event shows them, never are
                vars_ = self.vars
                for k in pending:
                    if vlines.get(k, 0) is None:
                        vlines[k] = line("variable_" + k, vars_[k])
                pending.clear()
            p = self._vars_plain = b"".join(vlines.values())
        return p

    def state_value(self, name: str) -> str | None:
        """``state_block().get(name)``, without the block."""
        g = _STATE_GET.get(name)
        return None if g is None else g(self)

    def vars_block(self) -> Block:
        b = self._vars_block
        if b is None:
            snap = self.vars.copy()
            b = self._vars_block = Block(
                plain=self.vars_plain(),
                src=lambda: [("variable_" + k, v) for k, v in snap.items()],
                getter=lambda n: snap.get(n[9:]) if n.startswith("variable_") else None)
        return b

    def snapshot_blocks(self, *, with_vars: bool = True) -> list[Block]:
        """The channel part of an event: state, profile, other leg, variables."""
        blocks = [self.state_block(), self.profile_block()]
        ob = self.other_block()
        if ob is not None:
            blocks.append(ob)
        if with_vars:
            blocks.append(self.vars_block())
        return blocks

    def data_profile_block(self) -> Block:
        """The ``Channel-*`` copy of the caller profile that CHANNEL_DATA starts with."""
        return Block(plain=self._profile_plain("Channel-"), src=lambda: self._profile_items("Channel-"),
                     prefix="Channel-")

    # -- queries ----------------------------------------------------------------------------
    @property
    def answered(self) -> bool:
        return self.answered_us != 0

    @property
    def alive(self) -> bool:
        return not self.gone and self.hangup_cause is None

    def header_value(self, name: str) -> str | None:
        """Value of an event header of this channel's snapshot (for ``eval uuid:``)."""
        if name.startswith("variable_"):
            return self.vars.get(name[9:])
        for blk in self.snapshot_blocks(with_vars=False):
            for k, v in blk.items:
                if k == name:
                    return v
        return None

    def current_app(self):
        return self.app_stack[-1] if self.app_stack else None


Channel = PyChannel
try:  # the typed channel (same behaviour; see ccfast/sim/_chan.pyx)
    from ._chan import Channel  # noqa: F811
except ImportError:  # pragma: no cover - not built
    pass
