"""mod_callcenter's ``CUSTOM callcenter::info`` events, as ccfast fires them.

The core records each event as ``(CC-Action, {header: value})`` in the order of reference §6.2.
Here they get what only the service knows — ``CC-Member-DNIS`` (the member's RDNIS) and, for the
events marked [+chan], the channel snapshot — and go out through ``sendevent`` on every box and to
the control port's subscribers.

Deliberate difference: the snapshot is sent without ``Unique-ID``. FreeSWITCH delivers a
``sendevent`` that names a live channel's ``Unique-ID`` to that channel instead of broadcasting it
(integration notes §7.2), so such events would be lost while the member hears hold music or is
bridged. ``Channel-Call-UUID``, ``Caller-Unique-ID`` and ``CC-Member-Session-UUID`` carry the uuid.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from .. import strings as S
from ..esl._link import Encoded

# events that carry a channel snapshot, and whose channel (§6.2)
MEMBER_SNAPSHOT = frozenset({S.ACTION_MEMBER_QUEUE_START, S.ACTION_MEMBER_QUEUE_RESUME, S.ACTION_MEMBER_QUEUE_END})
AGENT_SNAPSHOT = frozenset({S.ACTION_BRIDGE_AGENT_START, S.ACTION_BRIDGE_AGENT_END})
DNIS_EVENTS = frozenset({S.ACTION_AGENT_OFFERING, S.ACTION_BRIDGE_AGENT_START})

# headers FreeSWITCH adds itself or that would misroute a sendevent
_NOT_FORWARDED = frozenset({
    "Unique-ID", "Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname",
    "FreeSWITCH-IPv4", "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT",
    "Event-Date-Timestamp", "Event-Calling-File", "Event-Calling-Function",
    "Event-Calling-Line-Number", "Event-Sequence", "Content-Type", "Content-Length",
    "Reply-Text", "Socket-Mode", "Control", "Event-Subclass", "Command", "Event-UUID",
})


def snapshot(channel: Mapping[str, str]) -> list[tuple[str, str]]:
    """The channel-describing headers of a channel's last known event, minus envelope/routing.

    A ``ChannelVars`` remembers it until its variables change (a call fires 2–3 such events)."""
    memo = getattr(channel, "memo", None)
    if memo is not None:
        return memo("cc_snapshot", _snapshot)
    return _snapshot(channel)


def _snapshot(channel: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in channel.items() if k not in _NOT_FORWARDED and v not in ("", None)]


_SENDEVENT_LINE = f"sendevent CUSTOM\nEvent-Subclass: {S.EVENT_SUBCLASS}"
_SENDEVENT_HEAD = (_SENDEVENT_LINE + "\n").encode("utf-8")


def encode_event(action: str, headers: Mapping[str, str],
                 member_channel: Mapping[str, str] | None = None) -> Encoded:
    """``encode_sendevent(render(action, headers, member_channel))``, built straight to bytes
    (no header list; the member's snapshot lines are made once per change of its variables)."""
    parts = [_SENDEVENT_HEAD]
    if action in MEMBER_SNAPSHOT and member_channel is not None:
        parts.append(snapshot_lines(member_channel))
    if headers.keys() <= _GOOD_NAMES:
        # the usual case (the core's own header names): one comprehension, then one check for
        # line breaks over the whole text — each line contributes exactly one "\n" otherwise
        lines = [f"{name}: {value}\n" for name, value in headers.items() if value is not None and value != ""]
        text = "".join(lines)
        if "\r" not in text and text.count("\n") == len(lines):
            if action in DNIS_EVENTS and member_channel is not None:
                text += _dnis_line(headers, member_channel)
            parts.append((text + "\n").encode("utf-8"))
            return Encoded(b"".join(parts))
    names = _NAME_OK
    lines = []
    for name, value in headers.items():
        if value is None or value == "":
            continue
        value = str(value)
        if (names.get(name) or _check_name(name)) and "\n" not in value and "\r" not in value:
            lines.append(f"{name}: {value}\n")
    if action in DNIS_EVENTS and member_channel is not None:
        lines.append(_dnis_line(headers, member_channel))
    lines.append("\n")
    parts.append("".join(lines).encode("utf-8"))
    return Encoded(b"".join(parts))


def _dnis_line(headers: Mapping[str, str], member_channel: Mapping[str, str]) -> str:
    rdnis = member_channel.get("Caller-RDNIS")
    if rdnis and "CC-Member-DNIS" not in headers and "\n" not in rdnis and "\r" not in rdnis:
        return f"CC-Member-DNIS: {rdnis}\n"
    return ""


def snapshot_lines(channel: Mapping[str, str]) -> bytes:
    """``snapshot(channel)`` as sendevent header lines (unsendable ones left out)."""
    memo = getattr(channel, "memo", None)
    if memo is not None:
        return memo("cc_snapshot_lines", _snapshot_lines)
    return _snapshot_lines(channel)


def _snapshot_lines(channel: Mapping[str, str]) -> bytes:
    base = getattr(channel, "base", None)
    if hasattr(base, "sendevent_lines"):  # the Cython index over the connect reply's bytes
        return base.sendevent_lines(_NOT_FORWARDED, channel.overlay)
    names = _NAME_OK
    return "".join(
        f"{n}: {v}\n" for n, v in snapshot(channel)
        if (names.get(n) or _check_name(n)) and "\n" not in v and "\r" not in v
    ).encode("utf-8")


def encode_sendevent(rendered: list[tuple[str, str]]) -> Encoded:
    """``sendevent CUSTOM`` of one rendered event, encoded once for every box.

    A header whose value holds a line break cannot be carried by ``sendevent`` (FreeSWITCH reads
    one header per line) and is left out, as is one with an unusable name."""
    names = _NAME_OK
    return Encoded.frame(_SENDEVENT_LINE, [
        (n, v) for n, v in rendered
        if (names.get(n) or _check_name(n)) and "\n" not in v and "\r" not in v
    ])


_NAME_OK: dict[str, bool] = {}  # header name -> usable in sendevent (names repeat on every call)
_GOOD_NAMES: set[str] = set()  # the usable ones, for a whole-dict subset test


def _check_name(name: str) -> bool:
    ok = bool(name) and not (":" in name or " " in name or "\n" in name or "\r" in name
                             or name.lower() == "content-length")
    if len(_NAME_OK) < 100_000:
        _NAME_OK[name] = ok
        if ok:
            _GOOD_NAMES.add(name)
    return ok


def render(
    action: str,
    headers: Mapping[str, str],
    member_channel: Mapping[str, str] | None = None,
    agent_channel: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """The header list to fire for one core event (without ``Event-Subclass``)."""
    out: list[tuple[str, str]] = []
    if action in MEMBER_SNAPSHOT and member_channel is not None:
        out.extend(snapshot(member_channel))
    elif action in AGENT_SNAPSHOT and agent_channel is not None:
        out.extend(snapshot(agent_channel))
    for name, value in headers.items():
        if value is None or value == "":
            continue  # FreeSWITCH's event core drops empty headers (§6.1)
        out.append((name, str(value)))
    if action in DNIS_EVENTS and member_channel is not None:
        rdnis = member_channel.get("Caller-RDNIS")
        if rdnis and "CC-Member-DNIS" not in headers:
            out.append(("CC-Member-DNIS", rdnis))
    return out


@functools.lru_cache(maxsize=4096)
def encode_presence(queue: str, waiting: int) -> Encoded:
    """``sendevent PRESENCE_IN`` with ``presence_headers(queue, waiting)``, encoded once per
    (queue, count) — it goes out twice per call."""
    headers = presence_headers(queue, waiting)
    if any("\n" in v or "\r" in v for _, v in headers):
        raise ValueError(f"queue name {queue!r} cannot be carried in a presence event")
    return Encoded.frame("sendevent PRESENCE_IN", headers)


def presence_headers(queue: str, waiting: int) -> list[tuple[str, str]]:
    """``PRESENCE_IN`` for a queue (§6.3), fired with every ``members-count``.

    Deliberate difference: ``waiting`` is the members-count value (Waiting and Trying callers),
    not only Waiting ones — it is known without a scan of the queue.
    """
    active = waiting > 0
    return [
        ("proto", "callcenter"), ("login", queue), ("from", queue),
        ("force-status", f"Active ({waiting} waiting)" if active else "Idle"),
        ("rpid", "unknown"), ("event_type", "presence"), ("alt_event_type", "dialog"),
        ("event_count", "0"), ("channel-state", "CS_ROUTING" if active else "CS_HANGUP"),
        ("unique-id", queue), ("answer-state", "confirmed" if active else "terminated"),
        ("presence-call-direction", "inbound"),
    ]
