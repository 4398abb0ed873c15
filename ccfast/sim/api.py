"""The simulator's API commands (``api``/``bgapi``), with FreeSWITCH's output formats.

:func:`execute` returns the output text, or ``None`` when the command finishes later and calls
``done(text)`` itself (``originate``). Output strings and errors follow §1 and §8 of
``reference/freeswitch-integration.md``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Callable

from . import apps
from .switch import ExecMsg, Switch, new_uuid

NO_CHANNEL = "-ERR No such channel!\n"

Handler = Callable[[Switch, str, Callable[[str], None]], "str | None"]


def _split(args: str, n: int) -> list[str]:
    return args.strip().split(" ", n - 1) if args.strip() else []


def api_originate(sw: Switch, args: str, done) -> str | None:
    if not args.strip():
        return ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] "
                "[<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n")
    sw.originate(args, new_uuid(), done)
    return None


def api_uuid_bridge(sw: Switch, args: str, done) -> str:
    p = args.split()
    if len(p) < 2:
        return "-USAGE: <uuid> <other_uuid>\n"
    a, b = sw.get(p[0]), sw.get(p[1])
    if a is None or b is None:
        return "-ERR Invalid uuid\n"
    sw.uuid_bridge(a, b)
    return f"+OK {b.uuid}\n"


def api_uuid_kill(sw: Switch, args: str, done) -> str:
    p = args.split()
    if not p:
        return "-USAGE: <uuid> [cause]\n"
    ch = sw.get(p[0])
    if ch is None:
        return NO_CHANNEL
    cause = p[1] if len(p) > 1 else "NORMAL_CLEARING"
    sw.later(0.0, sw.hangup, ch, cause)
    return "+OK\n"


def api_uuid_setvar(sw: Switch, args: str, done) -> str:
    p = _split(args, 3)
    if len(p) < 2:
        return "-USAGE: <uuid> <var> [value]\n"
    ch = sw.get(p[0])
    if ch is None:
        return NO_CHANNEL
    ch.set_var(p[1], p[2] if len(p) > 2 else None)
    return "+OK\n"


def api_uuid_setvar_multi(sw: Switch, args: str, done) -> str:
    p = _split(args, 2)
    if len(p) < 2:
        return "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"
    ch = sw.get(p[0])
    if ch is None:
        return NO_CHANNEL
    for pair in p[1].split(";"):
        k, _, v = pair.partition("=")
        if k:
            ch.set_var(k, v or None)
    return "+OK\n"


def api_uuid_getvar(sw: Switch, args: str, done) -> str:
    p = args.split()
    if len(p) < 2:
        return "-USAGE: <uuid> <var>\n"
    ch = sw.get(p[0])
    if ch is None:
        return NO_CHANNEL
    return ch.vars.get(p[1], "_undef_")


def api_uuid_exists(sw: Switch, args: str, done) -> str:
    return "true" if sw.get(args.strip()) is not None else "false"


def api_uuid_answer(sw: Switch, args: str, done) -> str:
    ch = sw.get(args.strip())
    if ch is None:
        return NO_CHANNEL
    sw.later(sw.t.tick, sw.mark_answered, ch)
    return "+OK\n"


def api_uuid_break(sw: Switch, args: str, done) -> str:
    p = args.split()
    ch = sw.get(p[0]) if p else None
    if ch is None:
        return NO_CHANNEL
    apps.uuid_break(sw, ch, len(p) > 1 and p[1] == "all")
    return "+OK\n"


def api_uuid_broadcast(sw: Switch, args: str, done) -> str:
    p = args.split()
    if len(p) < 2:
        return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
    ch = sw.get(p[0])
    if ch is None:
        return NO_CHANNEL
    path = p[1]
    app, _, arg = path.partition("::")
    if arg:
        msg = ExecMsg(app, arg.replace("::", " "))
    else:
        msg = ExecMsg("playback", path)
    sw.later(sw.t.tick, sw.run_app_now, ch, msg)
    return "+OK Message sent\n"


def api_uuid_displace(sw: Switch, args: str, done) -> str:
    p = args.split()
    if len(p) < 2:
        return "-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]\n"
    ch = sw.get(p[0])
    if ch is None:
        return "-ERR Cannot locate session!\n"
    if p[1] == "start" and len(p) >= 3:
        ch.set_var("displace_file", p[2])
    elif p[1] == "stop":
        ch.set_var("displace_file", None)
    return "+OK\n"


def api_uuid_record(sw: Switch, args: str, done) -> str:
    p = args.split()
    if len(p) < 3 and not (len(p) >= 2 and p[1] == "stop"):
        return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
    ch = sw.get(p[0])
    if ch is None:
        return "-ERR Cannot locate session!\n"
    from .switch import C_RECORD
    if p[1] == "start":
        ch.set_var("sim_record_path", p[2])
        sw.later(sw.t.tick, sw.fire_chan, "RECORD_START", ch, C_RECORD,
                 None, [("Record-File-Path", p[2])])
    elif p[1] == "stop":
        path = ch.vars.get("sim_record_path", "")
        ch.set_var("sim_record_path", None)
        if path:
            sw.later(sw.t.tick, sw.fire_chan, "RECORD_STOP", ch, C_RECORD, None,
                     [("Record-File-Path", path), ("Record-Completion-Cause", "success")])
    return "+OK Success\n"


def api_hupall(sw: Switch, args: str, done) -> str:
    p = args.split()
    # never without a variable/value pair: with none FreeSWITCH hangs up every channel
    if len(p) < 3:
        return "-ERR hupall needs <cause> <variable> <value>; refusing to hang up every channel\n"
    cause, var, val = p[0], p[1], p[2]
    for ch in list(sw.channels.values()):
        if ch.alive and ch.vars.get(var) == val:
            sw.later(sw.t.tick, sw.hangup, ch, cause)
    return f"+OK hangup all channels matching [{var}]=[{val}] with cause: {cause}\n"


_EXPR = re.compile(r"\$\{([^}]*)\}")


def _expand(sw: Switch, ch, text: str) -> str:
    def sub(m: re.Match) -> str:
        inner = m.group(1)
        if "(" in inner and inner.endswith(")"):
            fname, _, fargs = inner[:-1].partition("(")
            if fname == "strftime":
                return time.strftime(fargs or "%Y-%m-%d %H:%M:%S")
            h = COMMANDS.get(fname)
            if h is None:
                return ""
            out = h(sw, fargs, lambda _t: None)
            return out or ""
        if ch is not None:
            v = ch.header_value(inner)
            return v or ""
        return sw.global_vars.get(inner, "")
    return _EXPR.sub(sub, text)


def api_eval(sw: Switch, args: str, done) -> str:
    ch = None
    text = args
    if text.startswith("uuid:"):
        u, _, text = text[5:].partition(" ")
        ch = sw.get(u)
    out = _expand(sw, ch, text)
    return out if out.strip() else "-ERR no reply\n"


def api_status(sw: Switch, args: str, done) -> str:
    import trio
    up = int(trio.current_time() - sw.started)
    d, r = divmod(up, 86400)
    h, r = divmod(r, 3600)
    m, s = divmod(r, 60)
    n = len(sw.channels)
    return (f"UP 0 years, {d} days, {h} hours, {m} minutes, {s} seconds, 0 milliseconds, "
            f"0 microseconds\nFreeSWITCH (Version 1.11.3-dev ccfast-sim) is ready\n"
            f"{sw.sessions_total} session(s) since startup\n"
            f"{n} session(s) - peak {n}, last 5min {n}\n0 session(s) per Sec out of max 30, "
            f"peak 0, last 5min 0\n1000 session(s) max\nmin idle cpu 0.00/100.00\n"
            f"Current Stack Size/Max 240K/8192K\n")


def api_create_uuid(sw: Switch, args: str, done) -> str:
    return new_uuid()


def api_show(sw: Switch, args: str, done) -> str:
    p = args.split()
    if not p or p[0] not in ("channels", "calls"):
        return "-USAGE: show channels|calls [as json]\n"
    as_json = len(p) >= 3 and p[1] == "as" and p[2] == "json"
    rows = []
    for ch in sw.channels.values():
        if not ch.alive:
            continue
        top = ch.current_app()
        pr = ch.profile
        rows.append({
            "uuid": ch.uuid, "direction": ch.direction,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ch.created_us / 1e6)),
            "created_epoch": str(ch.created_us // 1_000_000), "name": ch.name,
            "state": ch.state, "cid_name": pr["Caller-ID-Name"], "cid_num": pr["Caller-ID-Number"],
            "ip_addr": "", "dest": pr["Destination-Number"],
            "application": top.name if top else ("socket" if ch.in_socket else ""),
            "application_data": top.arg if top else "", "dialplan": "XML",
            "context": pr["Context"], "read_codec": "L16", "read_rate": "8000",
            "read_bit_rate": "128000", "write_codec": "L16", "write_rate": "8000",
            "write_bit_rate": "128000", "secure": "", "hostname": sw.host.hostname,
            "presence_id": "", "presence_data": "", "accountcode": "",
            "callstate": ch.call_state, "callee_name": "", "callee_num": "",
            "callee_direction": "", "call_uuid": ch.call_uuid, "sent_callee_name": "",
            "sent_callee_num": "", "initial_cid_name": pr["Orig-Caller-ID-Name"],
            "initial_cid_num": pr["Orig-Caller-ID-Number"], "initial_ip_addr": "",
            "initial_dest": pr["Destination-Number"], "initial_dialplan": "XML",
            "initial_context": pr["Context"],
        })
    if as_json:
        if not rows:
            return json.dumps({"row_count": 0})
        return json.dumps({"row_count": len(rows), "rows": rows})
    if not rows:
        return "\n0 total.\n"
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(r[k] for k in keys) for r in rows]
    return "\n".join(lines) + f"\n\n{len(rows)} total.\n"


def api_global_getvar(sw: Switch, args: str, done) -> str:
    return sw.global_vars.get(args.strip(), "")


def api_version(sw: Switch, args: str, done) -> str:
    return "FreeSWITCH Version 1.11.3-dev+ccfast-sim (sim)\n"


COMMANDS: dict[str, Handler] = {
    "originate": api_originate,
    "uuid_bridge": api_uuid_bridge,
    "uuid_kill": api_uuid_kill,
    "uuid_setvar": api_uuid_setvar,
    "uuid_setvar_multi": api_uuid_setvar_multi,
    "uuid_getvar": api_uuid_getvar,
    "uuid_exists": api_uuid_exists,
    "uuid_answer": api_uuid_answer,
    "uuid_break": api_uuid_break,
    "uuid_broadcast": api_uuid_broadcast,
    "uuid_displace": api_uuid_displace,
    "uuid_record": api_uuid_record,
    "hupall": api_hupall,
    "eval": api_eval,
    "expand": api_eval,
    "status": api_status,
    "create_uuid": api_create_uuid,
    "show": api_show,
    "global_getvar": api_global_getvar,
    "version": api_version,
}


def execute(sw: Switch, command: str, args: str, done: Callable[[str], None],
            job_uuid: str | None = None) -> str | None:
    """Run one API command; returns its output, or None if ``done`` will be called later.

    ``job_uuid`` names the originate job (the bgapi Job-UUID) so records can be matched."""
    if command == "originate" and args.strip():
        sw.originate(args, job_uuid or new_uuid(), done)
        return None
    h = COMMANDS.get(command)
    if h is None:
        return f"-ERR {command} Command not found!\n"
    out = h(sw, args, done)
    if out is not None and out == "":
        return "-ERR no reply\n"
    return out
