"""Dialplan applications run by ``sendmsg execute`` (and by originate's ``&app()``).

Queueing follows §2.4 of the integration reference: a message arriving while the running
application holds ``event-lock`` waits in the channel's queue; otherwise it runs *nested* inside
the running one (the outer playback goes on afterwards). ``playback`` of ``local_stream://`` or a
``tone_stream://…;loops=-1`` never ends by itself; ``uuid_break`` ends a playback (``FILE PLAYED``)
but only restarts ``endless_playback``; a bridge or ``resume`` interrupts both (``PLAYBACK
ERROR``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from .events import Block, SimEvent
from .switch import (C_EVENT_APP, C_EXEC, C_EXEC_DONE, C_PLAY_START, C_PLAY_STOP, C_RECORD,
                     ExecMsg, RunningApp, new_uuid)

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .switch import Switch


def playback_duration(sw: "Switch", path: str) -> float:
    if path.startswith("local_stream://") or "loops=-1" in path:
        return math.inf
    if path.startswith("silence_stream://"):
        try:
            ms = int(path[len("silence_stream://"):].split(",")[0])
            return math.inf if ms < 0 else ms / 1000.0
        except ValueError:
            return sw.t.playback_default
    if path.startswith("tone_stream://"):
        return 0.2
    return sw.t.playback_default


def _file_type(path: str) -> str:
    return path.split("://", 1)[0] if "://" in path else path.rsplit(".", 1)[-1]


def start(sw: "Switch", ch: "Channel", msg: ExecMsg) -> None:
    if not ch.alive:
        return
    name, arg = msg.app, msg.arg
    app = RunningApp(name, arg, new_uuid(), msg.event_lock)
    post = [("Application", name)]
    if arg:
        post.append(("Application-Data", arg))
    post.append(("Application-UUID", app.app_uuid))
    ch.set_var("current_application", name)
    if arg:
        ch.set_var("current_application_data", arg)
    sw.fire_chan("CHANNEL_EXECUTE", ch, C_EXEC, post=post)
    if name == "answer" or name == "pre_answer":
        sw.mark_answered(ch)
        complete(sw, ch, app, "_none_", pushed=False)
    elif name in ("playback", "endless_playback"):
        ch.app_stack.append(app)
        _play(sw, ch, app)
    elif name == "sleep":
        ch.app_stack.append(app)
        try:
            ms = int(arg or "0")
        except ValueError:
            ms = 0
        app.timer = sw.later(ms / 1000.0, complete, sw, ch, app, "_none_")
    elif name == "park":
        ch.app_stack.append(app)
        ch.set_var("park_app_uuid", app.app_uuid)
        sw.park(ch)
    elif name in ("set", "export"):
        k, _, v = arg.partition("=")
        if k:
            ch.set_var(k.strip(), v)
        complete(sw, ch, app, "_none_", pushed=False)
    elif name == "hangup":
        sw.hangup(ch, arg or "NORMAL_CLEARING")
    elif name == "record_session":
        ch.set_var("record_session_path", arg)
        sw.fire_chan("RECORD_START", ch, C_RECORD, post=[("Record-File-Path", arg)])
        complete(sw, ch, app, "_none_", pushed=False)
    elif name == "event":
        fire_event_app(sw, ch, arg)
        complete(sw, ch, app, "_none_", pushed=False)
    elif name == "socket":
        ch.app_stack.append(app)
        if sw.socket_app is None or socket_target(arg) is None:
            complete(sw, ch, app, "_none_")
        else:
            sw.socket_app(ch, app, arg)
    else:
        complete(sw, ch, app, "_none_", pushed=False)


# -- socket (outbound ESL) --------------------------------------------------------------------
def socket_target(arg: str) -> tuple[str, int] | None:
    """``<host:port> [async] [full]`` → (host, port); None when it is not an address."""
    host, sep, port = (arg.split() or [""])[0].rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def start_socket(sim, ch: "Channel", app: RunningApp | None, arg: str) -> None:
    """The ``socket`` app (``Switch.socket_app``, bound to the Simulator): connect to
    ``<host:port>`` and give that outbound session control of ``ch``.

    ``app`` given — run by ``sendmsg execute`` inside another socket session, as ccfast moves a
    caller to another node: the app stays on the channel's stack while the new session runs (the
    first session may close without ``resume``: its app is left alone, §2.5) and completes
    (CHANNEL_EXECUTE_COMPLETE) when the new session ends or cannot connect; the dialplan then goes
    on after the first ``socket``. ``app`` None — a ``socket`` step of the dialplan fallback
    (``CallerSpec.after_socket``): a socket session like the caller's first one; a failed connection
    continues the dialplan. Each session runs in its own trio tasks (not the reactor's hub)."""
    sim.switch.spawn(_run_socket, sim, ch, app, arg)


async def _run_socket(sim, ch: "Channel", app: RunningApp | None, arg: str) -> None:
    from .server import EslConnection  # here: server imports api, which imports this module

    sw = sim.switch
    target = socket_target(arg)
    stream = None
    try:
        stream = await trio.open_tcp_stream(*target)
    except OSError:
        pass
    if not ch.alive:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        return
    if stream is None:
        if app is not None:
            complete(sw, ch, app, "_none_")
        else:
            sim._socket_failed(ch)
        return
    words = arg.split()[1:]
    data = f"{target[0]}:{target[1]} {' '.join(words)}".rstrip()
    conn = EslConnection(sim, stream, channel=ch, socket_mode="async" if "async" in words else "static",
                         control="full" if "full" in words else "single-channel", peer=f"socket:{ch.uuid}")
    ch.set_vars([("current_application_data", data), ("current_application", "socket"),
                 ("socket_host", target[0]), ("socket_data", data)])
    ch.in_socket = True
    ch.socket = conn
    sim.connections[conn] = None
    sim.stats["socket_connections"] += 1
    try:
        await conn.run()
    finally:
        if app is not None:
            complete(sw, ch, app, "_none_")


def _play(sw: "Switch", ch: "Channel", app: RunningApp) -> None:
    path = app.arg
    sw.fire_chan("PLAYBACK_START", ch, C_PLAY_START, post=[
        ("Playback-File-Type", _file_type(path)), ("Playback-File-Path", path)])
    dur = math.inf if app.name == "endless_playback" else playback_duration(sw, path)
    if dur != math.inf:
        app.timer = sw.later(dur, stop_playback, sw, ch, app, "FILE PLAYED")


def stop_playback(sw: "Switch", ch: "Channel", app: RunningApp, response: str) -> None:
    if not ch.alive or app not in ch.app_stack:
        return
    if app.timer:
        app.timer.cancel()
    path = app.arg
    sw.fire_chan("PLAYBACK_STOP", ch, C_PLAY_STOP, post=[
        ("Playback-File-Type", _file_type(path)), ("Playback-File-Path", path),
        ("Playback-Status", "done" if response == "FILE PLAYED" else "break")])
    complete(sw, ch, app, response)


def complete(sw: "Switch", ch: "Channel", app: RunningApp, response: str,
             pushed: bool = True) -> None:
    if pushed:
        if app not in ch.app_stack:
            return
        ch.app_stack.remove(app)
        if app.timer:
            app.timer.cancel()
    if not ch.alive:
        return
    ch.set_var("current_application_response", response)
    post = [("Application", app.name)]
    if app.arg:
        post.append(("Application-Data", app.arg))
    post += [("Application-Response", response), ("Application-UUID", app.app_uuid)]
    sw.fire_chan("CHANNEL_EXECUTE_COMPLETE", ch, C_EXEC_DONE, post=post)
    if ch.app_stack:
        top = ch.app_stack[-1]
        ch.set_var("current_application", top.name)
    sw.drain_queue(ch)


def uuid_break(sw: "Switch", ch: "Channel", all_: bool) -> None:
    """Stop the current playback (all of them with *all_*); endless_playback restarts."""
    targets = list(reversed(ch.app_stack)) if all_ else ch.app_stack[-1:]
    for app in targets:
        if app.name == "playback" or app.name == "sleep":
            sw.later(sw.t.tick, stop_playback if app.name == "playback" else _break_sleep,
                     sw, ch, app, "FILE PLAYED")
        elif app.name == "endless_playback":
            pass  # restarts: never completes


def _break_sleep(sw, ch, app, _resp) -> None:
    complete(sw, ch, app, "_none_")


def interrupt_all(sw: "Switch", ch: "Channel") -> None:
    for app in list(reversed(ch.app_stack)):
        if app.name in ("playback", "endless_playback"):
            stop_playback(sw, ch, app, "PLAYBACK ERROR")
        elif app.name == "sleep":
            complete(sw, ch, app, "_none_")


def fire_event_app(sw: "Switch", ch: "Channel", arg: str) -> None:
    """The `event` app: a real event with this channel's snapshot (§7.3)."""
    pairs = []
    for item in arg.split(",")[:25]:
        k, eq, v = item.partition("=")
        if eq and k:
            pairs.append((k.strip(), v))
    name = "CUSTOM"
    sub = ""
    user = []
    for k, v in pairs:
        if k == "Event-Name":
            name = v
        elif k == "Event-Subclass":
            sub = v
        else:
            user.append((k, v))
    blocks = []
    if sub:
        blocks.append(Block([("Event-Subclass", sub)]))
    env = sw.host.envelope(name, C_EVENT_APP, first=False)
    env.append(("Event-Name", name))
    blocks.append(Block(env))
    if user:
        blocks.append(Block(user))
    blocks += ch.snapshot_blocks()
    sw.fire(SimEvent(name, blocks, subclass=sub, uuid=ch.uuid), ch)
