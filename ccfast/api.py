"""``callcenter_config`` and ``callcenter_break``: mod_callcenter's text and JSON API, byte-exact.

Pure functions over an ``ApiState`` (a Core, the loaded Config and two hooks). Grammar, replies
and table formats follow reference §7 and the module's C code: tokens split by FreeSWITCH's
splitter (``ccfast.tokenize``), at most 8; section/action/key words case-insensitive; every
reply ends with ``\\n`` except ``agent get`` (the raw value) and the empty reply of an unknown
section/action (which ESL shows as ``-ERR no reply``).

Mutations go through Core methods; a ``CoreError`` becomes ``-ERR <message>\\n``. Offers that a
status change cancels (§5.10) are appended to ``state.cancels`` for the service to carry out;
events are in the core's event queue as usual.

Listings read ``core.rows(table)`` (columns in the physical order of
``ccfast.strings.*_COLUMNS``) and reproduce the module's SQL: ``WHERE`` comparisons are exact
(case-sensitive, as on SQLite/PostgreSQL), a missing queue name is the literal ``(NULL)`` that
``%q`` prints for NULL, ``ORDER BY`` is stable over the core's row order (agents by name, tiers
by queue then agent, members by arrival).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from . import config as configmod
from . import strings as S
from .params import QueueParams, atoi
from .tokenize import separate_string

MAX_TOKENS = 8
NULL_TEXT = "(NULL)"  # what switch_mprintf's %q prints for a NULL string

USAGE = (
    "callcenter_config <target> <args>,\n"
    "\tcallcenter_config agent add [name] [type] | \n"
    "\tcallcenter_config agent del [name] | \n"
    "\tcallcenter_config agent reload [name] | \n"
    "\tcallcenter_config agent set status [agent_name] [status] | \n"
    "\tcallcenter_config agent set state [agent_name] [state] | \n"
    "\tcallcenter_config agent set contact [agent_name] [contact] | \n"
    "\tcallcenter_config agent set ready_time [agent_name] [wait till epoch] | \n"
    "\tcallcenter_config agent set reject_delay_time [agent_name] [wait second] | \n"
    "\tcallcenter_config agent set busy_delay_time [agent_name] [wait second] | \n"
    "\tcallcenter_config agent set no_answer_delay_time [agent_name] [wait second] | \n"
    "\tcallcenter_config agent get status [agent_name] | \n"
    "\tcallcenter_config agent get state [agent_name] | \n"
    "\tcallcenter_config agent get uuid [agent_name] | \n"
    "\tcallcenter_config agent list [[agent_name]] | \n"
    "\tcallcenter_config tier add [queue_name] [agent_name] [[level]] [[position]] | \n"
    "\tcallcenter_config tier set state [queue_name] [agent_name] [state] | \n"
    "\tcallcenter_config tier set level [queue_name] [agent_name] [level] | \n"
    "\tcallcenter_config tier set position [queue_name] [agent_name] [position] | \n"
    "\tcallcenter_config tier del [queue_name] [agent_name] | \n"
    "\tcallcenter_config tier reload [queue_name] [agent_name] | \n"
    "\tcallcenter_config tier list | \n"
    "\tcallcenter_config queue load [queue_name] | \n"
    "\tcallcenter_config queue unload [queue_name] | \n"
    "\tcallcenter_config queue reload [queue_name] | \n"
    "\tcallcenter_config queue list | \n"
    "\tcallcenter_config queue list agents [queue_name] [status] [state] | \n"
    "\tcallcenter_config queue list members [queue_name] | \n"
    "\tcallcenter_config queue list tiers [queue_name] | \n"
    "\tcallcenter_config queue count | \n"
    "\tcallcenter_config queue count agents [queue_name] [status] [state] | \n"
    "\tcallcenter_config queue count members [queue_name] | \n"
    "\tcallcenter_config queue count tiers [queue_name]"
)
USAGE_REPLY = f"-USAGE: \n{USAGE}\n"

OK = "+OK\n"
ERR_INVALID = "-ERR Invalid!\n"
ERR_UNKNOWN = "-ERR Unknown Error!\n"
ERR_QUEUE_NOT_FOUND_LOAD = "-ERR Invalid Queue not found!\n"
BREAK_USAGE = "-ERR Usage: callcenter_break agent <uuid>\n"
AGENT_GET_MAX = 63  # char ret[64] in the C code
JSON_ARGUMENTS = ("agent list", "queue list", "queue list agents", "queue list members",
                  "queue list tiers", "member list", "tier list")
JSON_QUEUE_FIELDS = (  # json `queue list`: (key, kind) — no counters, no ring_progressively_delay
    ("name", "s"), ("strategy", "s"), ("moh_sound", "s"), ("time_base_score", "s"),
    ("tier_rules_apply", "b"), ("tier_rule_wait_second", "n"), ("tier_rule_wait_multiply_level", "b"),
    ("tier_rule_no_agent_no_wait", "b"), ("discard_abandoned_after", "n"),
    ("abandoned_resume_allowed", "b"), ("max_wait_time", "n"), ("max_wait_time_with_no_agent", "n"),
    ("max_wait_time_with_no_agent_time_reached", "n"), ("record_template", "s"),
    ("skip_agents_with_external_calls", "b"), ("agent_no_answer_status", "s"),
)


class ApiUnavailable(Exception):
    """The API is not answering (shutting down): ESL shows ``-ERR <command> Command not found!``."""


@dataclasses.dataclass
class ApiState:
    """What the API works on.

    ``core``: the dispatch Core (docs/core-contract.md). ``config``: the loaded Config, used for
    lazy queue loading; ``reload_config()`` re-reads the configuration source for ``queue
    load|reload``, ``agent reload``, ``tier reload`` (default: ``config.reload()``); it may raise
    ``ConfigError`` (then those commands fail as mod_callcenter does when the XML cannot be
    opened). ``break_channel(uuid)`` sets the break flag on an agent channel and returns False
    when no such channel exists. ``cancels`` collects offers to cancel; the caller drains it.
    """

    core: Any
    config: configmod.Config | None = None
    reload_config: Callable[[], configmod.Config] | None = None
    break_channel: Callable[[str], bool] | None = None
    cancels: list = dataclasses.field(default_factory=list)
    running: bool = True
    warnings: list = dataclasses.field(default_factory=list)  # from the last config re-read
    # several nodes (docs/cluster.md): the ClusterGlue, and what the control port read from the
    # database for the listing being answered (members of queues owned elsewhere, agent rows of
    # agents another node is offering); None outside a listing / on a single node
    cluster: Any = None
    remote_members: list | None = None
    remote_agents: dict | None = None
    remote_counters: dict | None = None  # queue -> (calls_answered, calls_abandoned) of its owner


def agent_rows(state: ApiState) -> list[dict]:
    """The agents as the cluster sees them: the local core's rows, with the database's row for an
    agent another node is offering (its offer bookkeeping is written by that node)."""
    rows = state.core.rows("agents")
    remote = state.remote_agents
    if remote:
        rows = [remote.get(row["name"], row) for row in rows]
    return rows


def member_rows(state: ApiState) -> list[dict]:
    """The members of the whole cluster: this node's queues from the core, the others' from the
    database (``remote_members``); on a single node the core's rows."""
    rows = state.core.rows("members")
    if state.cluster is None or state.remote_members is None:
        return rows
    mine = state.cluster.ready
    return [row for row in rows if row["queue"] in mine] + list(state.remote_members)


# -- formatting -------------------------------------------------------------------------------


def cell(value: Any) -> str:
    """One field as FreeSWITCH's SQLite-style printf shows it: NULL → empty."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def format_table(columns: tuple[str, ...] | list[str], rows: list[dict]) -> str:
    """``list_result_callback`` + the final ``+OK``: header only when there are rows."""
    if not rows:
        return OK
    out = ["|".join(columns), "\n"]
    for row in rows:
        out.append("|".join(cell(row.get(column)) for column in columns))
        out.append("\n")
    out.append(OK)
    return "".join(out)


def _tf(flag: bool) -> str:
    return "true" if flag else "false"


def queue_list_row(params: QueueParams, answered: int, abandoned: int) -> str:
    """One ``queue list`` line (``%s|%s|…\\n``), in the header's order."""
    values = (
        params.name, params.strategy, cell(params.moh_sound), params.time_base_score,
        _tf(params.tier_rules_apply), params.tier_rule_wait_second, _tf(params.tier_rule_wait_multiply_level),
        _tf(params.tier_rule_no_agent_no_wait), params.discard_abandoned_after,
        _tf(params.abandoned_resume_allowed), params.max_wait_time, params.max_wait_time_with_no_agent,
        params.max_wait_time_with_no_agent_time_reached, cell(params.record_template), answered, abandoned,
        params.ring_progressively_delay, _tf(params.skip_agents_with_external_calls),
        params.agent_no_answer_status,
    )
    return "|".join(str(v) for v in values) + "\n"


def remote_counters(state: ApiState) -> dict[str, tuple[int, int]]:
    """Several nodes: {queue: (calls_answered, calls_abandoned)} of the queues this node does not
    own, as their owner last wrote them (``remote_counters``); empty on a single node."""
    if state.cluster is None or not state.remote_counters:
        return {}
    mine = state.cluster.ready
    return {q: c for q, c in state.remote_counters.items() if q not in mine}


def queue_list(core, counters: dict[str, tuple[int, int]] | None = None) -> str:
    """``queue list``; ``counters`` replace the core's counters of those queues (the owners'
    counters of queues another node dispatches)."""
    out = ["|".join(S.QUEUE_LIST_COLUMNS), "\n"]
    for name in sorted(core.queue_names()):  # the module's hash order is arbitrary; ours is by name
        params = core.queue_params(name)
        if params is None:
            continue
        answered, abandoned = (counters.get(name) if counters else None) or core.queue_counters(name)
        out.append(queue_list_row(params, answered, abandoned))
    out.append(OK)
    return "".join(out)


# -- row queries (the module's SQL, over core.rows) ---------------------------------------------


def agents_of_queue(core, queue: str, status: str | None = None, state: str | None = None,
                    rows: list[dict] | None = None) -> list[dict]:
    """``SELECT agents.* FROM agents,tiers WHERE tiers.agent = agents.name AND tiers.queue = q
    [AND agents.status = s [AND agents.state = t]]`` (exact comparisons). ``rows``: the agents
    rows to use (default ``core.rows("agents")``)."""
    agents = {row["name"]: row for row in (rows if rows is not None else core.rows("agents"))}
    out = []
    for tier in core.rows("tiers"):
        if tier["queue"] != queue:
            continue
        row = agents.get(tier["agent"])
        if row is None:
            continue
        if status is not None and row["status"] != status:
            continue
        if state is not None and row["state"] != state:
            continue
        out.append(row)
    return out


def members_with_score(core, now: int, queue: str | None, by_queue: bool = True,
                       members: list[dict] | None = None) -> list[dict]:
    """``SELECT *, (now-joined_epoch)+base_score+skill_score AS score FROM members
    [WHERE queue = q] ORDER BY [queue,] score DESC`` (``by_queue`` applies without q).
    ``members``: the member rows to use (default ``core.rows("members")``)."""
    rows = []
    for row in (members if members is not None else core.rows("members")):
        if queue is not None and row["queue"] != queue:
            continue
        scored = dict(row)
        scored["score"] = (now - (row["joined_epoch"] or 0)) + (row["base_score"] or 0) + (row["skill_score"] or 0)
        rows.append(scored)
    rows.sort(key=lambda r: -r["score"])  # stable: ties keep arrival order
    if queue is None and by_queue:
        rows.sort(key=lambda r: (r["queue"] is not None, r["queue"] or ""))  # NULLs first, as SQLite
    return rows


MEMBER_SCORE_COLUMNS = S.MEMBERS_COLUMNS + ("score",)


# -- helpers ----------------------------------------------------------------------------------


def _is_core_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "CoreError"


def _err(exc: BaseException) -> str:
    return f"-ERR {exc}\n"


def _reread(state: ApiState) -> configmod.Config | None:
    """Re-read the configuration for load/reload commands; None when it cannot be read."""
    try:
        if state.reload_config is not None:
            fresh = state.reload_config()
        elif state.config is not None:
            fresh = state.config.reload()
        else:
            return None
    except configmod.ConfigError as exc:
        state.warnings = [str(exc)]
        return None
    state.config = fresh
    state.warnings = [str(w) for w in fresh.warnings]
    return fresh


# -- callcenter_config ------------------------------------------------------------------------


def callcenter_config(state: ApiState, args: str | None, now: int) -> str:
    """The reply of ``api callcenter_config <args>`` (exactly what mod_callcenter writes)."""
    if not state.running:
        raise ApiUnavailable("callcenter_config")
    if not args:
        return USAGE_REPLY
    argv = separate_string(args, " ", MAX_TOKENS)
    if len(argv) < 2:
        return ERR_INVALID
    section, action = argv[0].lower(), argv[1].lower()
    rest = argv[2:]
    handler = _SECTIONS.get(section)
    if handler is None:
        return ""
    try:
        return handler(state, action, rest, now)
    except Exception as exc:
        if _is_core_error(exc):  # the core's own message is the module's error text
            return _err(exc)
        raise


def _arg(rest: list[str], index: int) -> str | None:
    return rest[index] if index < len(rest) else None


def _agent(state: ApiState, action: str, rest: list[str], now: int) -> str:
    core = state.core
    n = len(rest)
    if action == "add":
        if n < 2:
            return ERR_INVALID
        if S.canonical(rest[1], S.AGENT_TYPES) is None:
            return "-ERR Agent type invalid!\n"  # cc_agent_add checks the type before existence
        core.agent_add(rest[0], rest[1], now)
        return OK
    if action == "del":
        if n < 1:
            return ERR_INVALID
        core.agent_del(rest[0])
        return OK
    if action == "reload":
        if n < 1:
            return ERR_INVALID
        cfg = _reread(state)
        if cfg is None:
            return ERR_UNKNOWN
        state.cancels.extend(configmod.load_agent(core, cfg, rest[0], now))
        return OK
    if action == "set":
        if n < 3:
            return ERR_INVALID
        cancels = core.agent_set(rest[0], rest[1], rest[2], now)
        state.cancels.extend(cancels or [])
        return OK
    if action == "get":
        if n < 2:
            return ERR_INVALID
        value = core.agent_get(rest[0], rest[1])
        raw = cell(value).encode("utf-8")[:AGENT_GET_MAX]
        return raw.decode("utf-8", "ignore")
    if action == "list":
        if n > 1:
            return ERR_INVALID
        rows = agent_rows(state)
        if n == 1:
            rows = [row for row in rows if row["name"] == rest[0]]
        return format_table(S.AGENTS_COLUMNS, rows)
    return ""


def _tier(state: ApiState, action: str, rest: list[str], now: int) -> str:
    core = state.core
    n = len(rest)
    if action == "add":
        if n < 2:
            return ERR_INVALID
        queue, agent = rest[0], rest[1]
        level = atoi(rest[2]) if n > 2 and rest[2] else 1
        position = atoi(rest[3]) if n > 3 and rest[3] else 1
        configmod.resolve_queue(core, state.config, queue)  # get_queue() loads it lazily
        core.tier_add(queue, agent, level, position)
        return OK
    if action == "set":
        if n < 4:
            return ERR_INVALID
        key, queue, agent, value = rest[0], rest[1], rest[2], rest[3]
        if core.queue_params(queue) is None and state.config is not None and state.config.queue_source(queue):
            # get_queue() runs only after the tier and agent checks: load lazily only then
            tier_exists = any(t["queue"] == queue and t["agent"] == agent for t in core.rows("tiers"))
            agent_exists = any(a["name"] == agent for a in core.rows("agents"))
            if tier_exists and agent_exists:
                configmod.resolve_queue(core, state.config, queue)
        core.tier_set(key, queue, agent, value)
        return OK
    if action == "del":
        if n < 2:
            return ERR_INVALID
        core.tier_del(rest[0], rest[1])
        return OK
    if action == "reload":
        if n < 1:
            return ERR_INVALID
        cfg = _reread(state)
        if cfg is None:
            return ERR_UNKNOWN
        queue, agent = rest[0], _arg(rest, 1)
        load_all = queue.lower() == "all"
        matched = configmod.load_tiers(core, cfg, now, load_all=load_all, queue=queue, agent=agent)
        return OK if matched else ERR_UNKNOWN
    if action == "list":
        rows = sorted(core.rows("tiers"), key=lambda t: (t["level"], t["position"]))
        return format_table(S.TIERS_COLUMNS, rows)
    return ""


def _reload_if_referenced(state: ApiState, name: str) -> None:
    """After ``queue unload``, mod_callcenter's next dispatcher pass (rows Waiting/Abandoned/
    ringing) or member watchdog (members in the app) looks the queue up again and so reloads it
    from XML (§2.6 QUIRK) — without it the core would drop those members. Do that lookup now."""
    if state.config is None or state.config.queue_source(name) is None:
        return
    if any(m["queue"] == name and m["state"] != S.MEMBER_ANSWERED for m in state.core.rows("members")):
        configmod.resolve_queue(state.core, state.config, name)


def _queue_load(state: ApiState, name: str, now: int) -> str:
    cfg = _reread(state)
    if cfg is None:
        return ERR_QUEUE_NOT_FOUND_LOAD
    found, cancels = configmod.load_queue(state.core, cfg, name, now)
    state.cancels.extend(cancels)
    return OK if found else ERR_QUEUE_NOT_FOUND_LOAD


def _queue(state: ApiState, action: str, rest: list[str], now: int) -> str:
    core = state.core
    n = len(rest)
    if action in ("load", "unload", "reload"):
        if n < 1:
            return ERR_INVALID
        name = rest[0]
        if action == "load":
            reply = _queue_load(state, name, now)
        else:
            if core.queue_params(name) is not None:
                core.queue_remove(name)
            if action == "unload":
                _reload_if_referenced(state, name)
                reply = OK
            else:
                reply = _queue_load(state, name, now)
        if reply == OK and state.cluster is not None:
            state.cluster.queue_changed(action, name)  # applied on the other nodes too (feed)
        return reply
    if action == "list":
        if n < 1:
            return queue_list(core, remote_counters(state))
        sub, queue = rest[0].lower(), _arg(rest, 1)
        if sub == "agents":
            rows = agents_of_queue(core, queue if queue is not None else NULL_TEXT, _arg(rest, 2), _arg(rest, 3),
                                   agent_rows(state))
            return format_table(S.AGENTS_COLUMNS, rows)
        if sub == "members":
            return format_table(MEMBER_SCORE_COLUMNS, members_with_score(core, now, queue, members=member_rows(state)))
        if sub == "tiers":
            q = queue if queue is not None else NULL_TEXT
            return format_table(S.TIERS_COLUMNS, [t for t in core.rows("tiers") if t["queue"] == q])
        return ERR_INVALID
    if action == "count":
        if n < 1:
            return f"{len(core.queue_names())}\n"
        sub, queue = rest[0].lower(), _arg(rest, 1)
        q = queue if queue is not None else NULL_TEXT
        if sub == "agents":
            count = len(agents_of_queue(core, q, _arg(rest, 2), _arg(rest, 3), agent_rows(state)))
        elif sub == "members":
            count = sum(1 for m in member_rows(state) if m["queue"] == q)
        elif sub == "tiers":
            count = sum(1 for t in core.rows("tiers") if t["queue"] == q)
        else:
            return ERR_INVALID
        return f"{count}\n"
    return ""


_SECTIONS = {"agent": _agent, "tier": _tier, "queue": _queue}


# -- callcenter_break -------------------------------------------------------------------------


def callcenter_break(state: ApiState, args: str | None) -> str:
    """``callcenter_break agent <uuid>``: only the second token counts; success prints nothing."""
    if not args:
        return BREAK_USAGE
    argv = separate_string(args, " ", 2)
    if len(argv) < 2:
        return BREAK_USAGE
    uuid = argv[1]
    found = state.break_channel(uuid) if state.break_channel is not None else False
    if not found:
        return f"-ERR Session not found for uuid {uuid}\n"
    return ""


# -- JSON API (§7.4) --------------------------------------------------------------------------


def _json_rows(columns: tuple[str, ...], rows: list[dict]) -> list[dict]:
    """Each row as ``{column: string}``; NULL columns are left out (cJSON_CreateString(NULL))."""
    return [{c: cell(row.get(c)) for c in columns if row.get(c) is not None} for row in rows]


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def callcenter_config_json(state: ApiState, data: dict | None, now: int) -> tuple[bool, str]:
    """``{"command":"callcenter_config","data":{...}}``: (success, JSON reply text).

    A failure without a reply object (unknown or missing ``arguments``) gives ``(False, "")``.
    """
    if not state.running:
        raise ApiUnavailable("callcenter_config")
    data = data if isinstance(data, dict) else {}
    arguments = data.get("arguments")
    if not isinstance(arguments, str) or not arguments:
        return False, ""
    what = arguments.lower()
    if what not in JSON_ARGUMENTS:
        return False, ""
    core = state.core
    if what == "agent list":
        return True, _dump(_json_rows(S.AGENTS_COLUMNS, agent_rows(state)))
    if what == "tier list":
        rows = sorted(core.rows("tiers"), key=lambda t: (t["level"], t["position"]))
        return True, _dump(_json_rows(S.TIERS_COLUMNS, rows))
    if what == "member list":
        rows = members_with_score(core, now, None, by_queue=False, members=member_rows(state))
        return True, _dump(_json_rows(MEMBER_SCORE_COLUMNS, rows))
    if what == "queue list":
        out = []
        for name in sorted(core.queue_names()):
            params = core.queue_params(name)
            if params is None:
                continue
            obj: dict[str, Any] = {}
            for key, kind in JSON_QUEUE_FIELDS:
                value = getattr(params, key)
                if kind == "b":
                    obj[key] = _tf(value)
                elif kind == "n":
                    obj[key] = value
                elif value is not None:
                    obj[key] = value
            out.append(obj)
        return True, _dump(out)
    queue = data.get("queue_name")
    if not isinstance(queue, str) or not queue:
        return False, _dump({"error": "Missing data attribute: queue_name"})
    if what == "queue list agents":
        return True, _dump(_json_rows(S.AGENTS_COLUMNS, agents_of_queue(core, queue, rows=agent_rows(state))))
    if what == "queue list members":
        return True, _dump(_json_rows(MEMBER_SCORE_COLUMNS,
                                      members_with_score(core, now, queue, members=member_rows(state))))
    return True, _dump(_json_rows(S.TIERS_COLUMNS, [t for t in core.rows("tiers") if t["queue"] == queue]))
