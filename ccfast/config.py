"""``callcenter.conf.xml`` read as mod_callcenter reads it, plus ccfast's own settings.

Entry points:

* ``load_config(path, ccfast_path=None) -> Config`` — the operator's file unchanged (a bare
  ``<configuration name="callcenter.conf">``, or inside FreeSWITCH's ``<document><section
  name="configuration">``, or an ``<include>``), and ccfast's settings from ``ccfast_path``, from a
  ``<ccfast>`` element inside the callcenter configuration, or from a ``<configuration
  name="ccfast.conf">`` in the same document (docs/configuration.md).
* ``config_from_db_rows(...) -> Config`` — the "config in database" layout (``cc_queues``,
  ``cc_agents``, ``cc_tiers``, ``cc_settings``) mapped to the same object.
* ``apply_startup``, ``load_queue``, ``load_agent``, ``load_tiers``, ``resolve_queue`` — apply
  the XML agents/tiers/queues to a Core with mod_callcenter's semantics (§2.4-§2.6).

mod_callcenter is lenient: bad values fall back to defaults with a log line. Those cases become
``ConfigWarning``s (``file:line: message``) in ``Config.warnings``. Only what cannot work raises
``ConfigError`` (unparsable XML, a DSN ccfast cannot use, duplicate queue names, bad listener
addresses, a box without host, unknown ccfast settings or dispatcher mode...).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from . import dsn as dsnmod
from . import strings as S
from .params import PARAM_NAMES, QueueParams, atoi, build_queue_params, settings_bool
from .xmlsrc import Node, XmlError, expand, parse_file, parse_text, preprocess_vars, unexpanded

CONFIG_NAME = "callcenter.conf"
CCFAST_CONFIG_NAME = "ccfast.conf"


class ConfigError(Exception):
    """Configuration that cannot work. ``str()`` names file, line, parameter and allowed values."""

    def __init__(self, where: str, param: str | None, problem: str, allowed: str | None = None):
        text = f"{where}: "
        if param:
            text += f"{param}: "
        text += problem
        if allowed:
            text += f" (allowed: {allowed})"
        super().__init__(text)
        self.where, self.param, self.problem, self.allowed = where, param, problem, allowed


@dataclasses.dataclass(frozen=True)
class ConfigWarning:
    where: str  # "file:line"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


# -- mod_callcenter <settings> (§2.2) ---------------------------------------------------------


@dataclasses.dataclass
class Settings:
    odbc_dsn: str | None = None
    dbname: str | None = None  # None: not set (ccfast then keeps the tables in RAM)
    cc_instance_id: str = S.SINGLE_BOX
    reserve_agents: bool = False
    truncate_tiers_on_load: bool = False
    truncate_agents_on_load: bool = False
    global_database_lock: bool = True  # parsed for compatibility; ccfast has no global DB lock
    agent_originate_timeout: int = 60
    debug: int = 0


SETTINGS_PARAMS = (
    "odbc-dsn", "dbname", "cc-instance-id", "reserve-agents", "truncate-tiers-on-load",
    "truncate-agents-on-load", "global-database-lock", "agent-originate-timeout", "debug",
)


# -- ccfast's own settings --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class BoxConfig:
    """One FreeSWITCH box ccfast connects to (inbound ESL)."""

    name: str
    host: str
    port: int = 8021
    password: str = dataclasses.field(default="ClueCon", repr=False)
    where: str = dataclasses.field(default="", compare=False)


DISPATCHER_MODES = ("core", "oracle")
CONFIG_SOURCES = ("xml", "database")

# name -> (default text, description). The single place for ccfast defaults.
CCFAST_PARAMS: dict[str, tuple[str, str]] = {
    "outbound-listen": ("127.0.0.1:8040", "address of the outbound ESL listener (dialplan `socket` target)"),
    "control-listen": ("127.0.0.1:8022", "ESL-compatible control port (fs_cli -P); empty disables"),
    "control-password": ("ClueCon", "password of the control port"),
    "metrics-listen": ("127.0.0.1:9464", "HTTP /metrics and /healthz; empty disables"),
    "dispatcher": ("core", "core | oracle"),
    "store-batch-ms": ("50", "write-behind batch window in milliseconds (0..60000)"),
    "store-max-batch": ("5000", "most journal rows written in one batch (1..1000000)"),
    "db-dir": (".", "directory for a bare `dbname` (FreeSWITCH's db dir if dashboards read it there)"),
    "config-source": ("xml", "xml | database (cc_queues/cc_agents/cc_tiers/cc_settings tables)"),
    "config-dsn": ("", "database holding the cc_* config tables; empty = the store's database"),
    # several nodes on one PostgreSQL (docs/cluster.md)
    "cluster": ("false", "true: several ccfast nodes share the PostgreSQL odbc-dsn (docs/cluster.md)"),
    "cluster-address": ("", "this node's outbound HOST:PORT other nodes redirect callers to; empty = outbound-listen"),
    "cluster-interval": ("1.0", "seconds between ownership rounds (0.05..60)"),
    "cluster-stale-after": ("5.0", "seconds without heartbeat before a node counts as hung (> 2 × cluster-interval)"),
}
DEFAULT_BOX = ("fs1", "127.0.0.1", 8021, "ClueCon")


@dataclasses.dataclass
class CcfastSettings:
    boxes: list[BoxConfig]
    outbound_listen: Address
    control_listen: Address | None
    control_password: str = dataclasses.field(repr=False, default="ClueCon")
    metrics_listen: Address | None = None
    dispatcher: str = "core"
    store_batch_ms: int = 50
    store_max_batch: int = 5000
    db_dir: str = "."
    config_source: str = "xml"
    config_dsn: str = ""
    cluster: bool = False
    cluster_address: Address | None = None
    cluster_interval: float = 1.0
    cluster_stale_after: float = 5.0
    cluster_where: str = dataclasses.field(default="", compare=False, repr=False)


# -- queues, agents, tiers --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """An ``<agent>`` element: attribute values exactly as written (None when absent)."""

    name: str
    type: str | None
    contact: str | None = None
    status: str | None = None
    max_no_answer: str | None = None
    wrap_up_time: str | None = None
    reject_delay_time: str | None = None
    busy_delay_time: str | None = None
    no_answer_delay_time: str | None = None
    where: str = ""


# (XML attribute, agent_set key) in the order load_agent applies them (§2.4)
AGENT_ATTRS = (
    ("contact", "contact"), ("status", "status"), ("wrap-up-time", "wrap_up_time"),
    ("max-no-answer", "max_no_answer"), ("reject-delay-time", "reject_delay_time"),
    ("busy-delay-time", "busy_delay_time"), ("no-answer-delay-time", "no_answer_delay_time"),
)


@dataclasses.dataclass(frozen=True)
class TierConfig:
    agent: str | None
    queue: str | None
    level: str | None = None
    position: str | None = None
    where: str = ""


@dataclasses.dataclass
class QueueSource:
    """A ``<queue>``: its effective ``<param>`` values (FreeSWITCH event semantics)."""

    name: str
    params: dict[str, str]
    where: str = ""


@dataclasses.dataclass
class Config:
    path: str
    settings: Settings
    queue_sources: list[QueueSource]
    agents: list[AgentConfig]
    tiers: list[TierConfig]
    ccfast: CcfastSettings
    database: dsnmod.DatabaseTarget
    warnings: list[ConfigWarning] = dataclasses.field(default_factory=list)
    ccfast_path: str | None = None
    # the content when loaded from text (tests); reload() then parses it again
    texts: tuple = dataclasses.field(default=(None, None), repr=False, compare=False)
    origin: str = "xml"  # or "database" (config_from_db_rows)

    @property
    def queues(self) -> dict[str, QueueParams]:
        """Queue name -> params, in file order."""
        return {src.name: build_queue_params(src.name, src.params)[0] for src in self.queue_sources}

    def queue_source(self, name: str) -> QueueSource | None:
        """``switch_xml_find_child(queues, "queue", "name", name)``: case-insensitive, first."""
        low = name.lower()
        for src in self.queue_sources:
            if src.name.lower() == low:
                return src
        return None

    def queue_params(self, name: str) -> QueueParams | None:
        """The queue built from XML under the name as *asked* (mod_callcenter keeps that spelling)."""
        src = self.queue_source(name)
        if src is None:
            return None
        return build_queue_params(name, src.params)[0]

    def agent(self, name: str) -> AgentConfig | None:
        """The first agent of that name, any case (an index: applying 20,000 XML agents asks
        for each of them, which a scan made quadratic)."""
        index = self.__dict__.get("_agent_index")
        if index is None or index[0] is not self.agents or index[1] != len(self.agents):
            by_name: dict[str, AgentConfig] = {}
            for agent in self.agents:
                by_name.setdefault(agent.name.lower(), agent)
            index = self.__dict__["_agent_index"] = (self.agents, len(self.agents), by_name)
        return index[2].get(name.lower())

    def reload(self) -> "Config":
        """Read the same files again (``queue load``, ``agent reload``, ``tier reload``)."""
        if self.origin != "xml":
            raise ConfigError(self.path, None, "this configuration came from the database; re-read it with "
                              "config_from_db_rows (ApiState.reload_config)")
        text, ccfast_text = self.texts
        return load_config(self.path, self.ccfast_path, text=text, ccfast_text=ccfast_text)


# -- reading ----------------------------------------------------------------------------------


def _find_configuration(root: Node, name: str) -> Node | None:
    """The ``<configuration name=…>`` element, bare, in ``<include>`` or in a ``<document>``."""
    low = name.lower()

    def is_it(node: Node) -> bool:
        return node.tag == "configuration" and (node.attr("name") or "").lower() == low

    if is_it(root):
        return root
    if root.tag in ("include", "document"):
        for node in root.children:
            if is_it(node):
                return node
            if node.tag == "section" and (node.attr("name") or "").lower() == "configuration":
                for sub in node.children:
                    if is_it(sub):
                        return sub
                    if sub.tag == "include":
                        for inner in sub.children:
                            if is_it(inner):
                                return inner
            if node.tag == "include":
                for sub in node.children:
                    if is_it(sub):
                        return sub
    return None


def _params(node: Node | None) -> list[tuple[str, str, Node]]:
    if node is None:
        return []
    return [(p.attrs.get("name", ""), p.attrs.get("value", ""), p) for p in node.all("param")]


def _event_params(node: Node) -> tuple[dict[str, str], dict[str, Node]]:
    """Queue ``<param>``s as ``switch_event_import_xml`` + ``switch_event_get_header`` see them:
    names case-insensitive, the first non-empty value wins, an empty value deletes earlier ones."""
    values: list[tuple[str, str, Node]] = []
    for name, value, param in _params(node):
        low = name.lower()
        if value == "":
            values = [item for item in values if item[0].lower() != low]
            continue
        values.append((name, value, param))
    chosen: dict[str, str] = {}
    lines: dict[str, Node] = {}
    seen: set[str] = set()
    for name, value, param in values:
        low = name.lower()
        if low in seen:
            continue
        seen.add(low)
        chosen[name] = value
        lines[name] = param
    return chosen, lines


def _read_settings(cfg: Node, variables: dict[str, str], warnings: list[ConfigWarning]) -> tuple[Settings, dict[str, Node]]:
    settings = Settings()
    where: dict[str, Node] = {}
    for name, value, param in _params(cfg.child("settings")):
        low = name.lower()
        if low not in SETTINGS_PARAMS:
            if low.startswith("ccfast-"):
                raise ConfigError(param.where, name, "ccfast settings go in a <ccfast> element or a ccfast.conf file, not in <settings>")
            warnings.append(ConfigWarning(param.where, f"unknown settings param {name!r} ignored (known: {', '.join(SETTINGS_PARAMS)})"))
            continue
        if low in ("odbc-dsn", "dbname", "cc-instance-id"):
            value = expand(value, variables)
        where[low] = param
        if low == "debug":
            settings.debug = atoi(value)
        elif low == "dbname":
            settings.dbname = value or None
        elif low == "odbc-dsn":
            settings.odbc_dsn = value or None
        elif low == "reserve-agents":
            settings.reserve_agents = settings_bool(value)
        elif low == "truncate-tiers-on-load":
            settings.truncate_tiers_on_load = settings_bool(value)
        elif low == "truncate-agents-on-load":
            settings.truncate_agents_on_load = settings_bool(value)
        elif low == "global-database-lock":
            settings.global_database_lock = settings_bool(value)
        elif low == "cc-instance-id":
            settings.cc_instance_id = value or S.SINGLE_BOX
        elif low == "agent-originate-timeout":
            timeout = atoi(value)
            if timeout < 0:
                warnings.append(ConfigWarning(param.where, f"agent-originate-timeout={value!r} is negative; using 60"))
                timeout = 0
            settings.agent_originate_timeout = timeout or 60
    return settings, where


def _read_queues(cfg: Node, warnings: list[ConfigWarning]) -> list[QueueSource]:
    sources: list[QueueSource] = []
    by_lower: dict[str, QueueSource] = {}
    queues = cfg.child("queues")
    for node in queues.all("queue") if queues is not None else []:
        name = node.attr("name")
        if not name:
            warnings.append(ConfigWarning(node.where, "<queue> without a name is ignored"))
            continue
        if name.lower() in by_lower:
            first = by_lower[name.lower()]
            raise ConfigError(
                node.where, f"queue {name}",
                f"duplicate queue name (first defined at {first.where}); mod_callcenter would give both the first one's params",
                "each queue name once (names compare case-insensitively)",
            )
        values, lines = _event_params(node)
        for pname, value in values.items():
            if pname.lower() not in PARAM_NAMES:
                warnings.append(ConfigWarning(lines[pname].where, f"queue {name}: unknown param {pname!r} ignored"))
                continue
            _, problems = build_queue_params(name, {pname: value})
            for problem in problems:
                warnings.append(ConfigWarning(lines[pname].where, problem))
        src = QueueSource(name, {k: v for k, v in values.items() if k.lower() in PARAM_NAMES}, node.where)
        sources.append(src)
        by_lower[name.lower()] = src
    return sources


def _read_agents(cfg: Node, warnings: list[ConfigWarning]) -> list[AgentConfig]:
    agents: list[AgentConfig] = []
    seen: dict[str, str] = {}
    node_agents = cfg.child("agents")
    for node in node_agents.all("agent") if node_agents is not None else []:
        name = node.attr("name")
        if name is None:
            warnings.append(ConfigWarning(node.where, "<agent> without a name is ignored"))
            continue
        agent = AgentConfig(
            name=name, type=node.attr("type"), contact=node.attr("contact"), status=node.attr("status"),
            max_no_answer=node.attr("max-no-answer"), wrap_up_time=node.attr("wrap-up-time"),
            reject_delay_time=node.attr("reject-delay-time"), busy_delay_time=node.attr("busy-delay-time"),
            no_answer_delay_time=node.attr("no-answer-delay-time"), where=node.where,
        )
        if name.lower() in seen:
            warnings.append(ConfigWarning(node.where, f"agent {name}: defined again (first at {seen[name.lower()]}); like mod_callcenter, the first definition is used"))
        else:
            seen[name.lower()] = node.where
        if agent.type is None:
            warnings.append(ConfigWarning(node.where, f"agent {name}: no type attribute; mod_callcenter ignores this agent"))
        elif S.canonical(agent.type, S.AGENT_TYPES) is None:
            warnings.append(ConfigWarning(node.where, f"agent {name}: type {agent.type!r} is not one of {', '.join(S.AGENT_TYPES)}; agent ignored"))
        if agent.status is not None and S.canonical(agent.status, S.AGENT_STATUSES) is None:
            warnings.append(ConfigWarning(node.where, f"agent {name}: status {agent.status!r} is not one of {', '.join(S.AGENT_STATUSES)}; status not applied"))
        agents.append(agent)
    return agents


def _read_tiers(cfg: Node, warnings: list[ConfigWarning]) -> list[TierConfig]:
    tiers: list[TierConfig] = []
    node_tiers = cfg.child("tiers")
    for node in node_tiers.all("tier") if node_tiers is not None else []:
        tier = TierConfig(node.attr("agent"), node.attr("queue"), node.attr("level"), node.attr("position"), node.where)
        if tier.agent is None or tier.queue is None:
            warnings.append(ConfigWarning(node.where, "<tier> needs both agent and queue attributes; ignored"))
            continue
        tiers.append(tier)
    return tiers


def parse_address(text: str, where: str, param: str, allow_off: bool) -> Address | None:
    value = text.strip()
    if allow_off and value.lower() in ("", "off", "none", "disabled"):
        return None
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host:
        raise ConfigError(where, param, f"{text!r} is not an address", "HOST:PORT, e.g. 127.0.0.1:8040" + ("; empty to disable" if allow_off else ""))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(where, param, f"port {port!r} is not a number in 1..65535", "1..65535")
    return Address(host, int(port))


def _int_param(value: str, where: str, param: str, low: int, high: int) -> int:
    text = value.strip()
    if not text.lstrip("-").isdigit() or not low <= int(text) <= high:
        raise ConfigError(where, param, f"{value!r} is not an integer in {low}..{high}", f"{low}..{high}")
    return int(text)


def read_ccfast(block: Node | None, variables: dict[str, str]) -> CcfastSettings:
    """ccfast's own settings from a ``<ccfast>`` / ``<configuration name="ccfast.conf">`` element."""
    values = {name: default for name, (default, _) in CCFAST_PARAMS.items()}
    where = {name: "(default)" for name in CCFAST_PARAMS}
    boxes: list[BoxConfig] = []
    if block is not None:
        for name, value, param in _params(block.child("settings")):
            low = name.lower()
            if low not in CCFAST_PARAMS:
                raise ConfigError(param.where, name, "unknown ccfast setting", ", ".join(CCFAST_PARAMS))
            values[low] = expand(value, variables)
            where[low] = param.where
        container = block.child("boxes") or block.child("freeswitch")
        seen: dict[str, str] = {}
        for node in container.all("box") if container is not None else []:
            host = expand(node.attr("host") or "", variables).strip()
            name = node.attr("name") or host
            if not host:
                raise ConfigError(node.where, f"box {name or '?'}", "no host", "a host name or IP address of the FreeSWITCH event socket")
            if name in seen:
                raise ConfigError(node.where, f"box {name}", f"duplicate box name (first at {seen[name]})", "unique names")
            seen[name] = node.where
            port = _int_param(node.attr("port") or "8021", node.where, f"box {name} port", 1, 65535)
            password = expand(node.attr("password") or "ClueCon", variables)
            boxes.append(BoxConfig(name, host, port, password, node.where))
    if not boxes:
        name, host, port, password = DEFAULT_BOX
        boxes.append(BoxConfig(name, host, port, password, "(default)"))
    dispatcher = values["dispatcher"].strip().lower()
    if dispatcher not in DISPATCHER_MODES:
        raise ConfigError(where["dispatcher"], "dispatcher", f"unknown mode {values['dispatcher']!r}", " | ".join(DISPATCHER_MODES))
    source = values["config-source"].strip().lower()
    if source not in CONFIG_SOURCES:
        raise ConfigError(where["config-source"], "config-source", f"unknown source {values['config-source']!r}", " | ".join(CONFIG_SOURCES))
    outbound = parse_address(values["outbound-listen"], where["outbound-listen"], "outbound-listen", allow_off=False)
    assert outbound is not None
    cluster = _read_cluster(values, where, outbound)
    return CcfastSettings(
        boxes=boxes,
        outbound_listen=outbound,
        control_listen=parse_address(values["control-listen"], where["control-listen"], "control-listen", allow_off=True),
        control_password=values["control-password"],
        metrics_listen=parse_address(values["metrics-listen"], where["metrics-listen"], "metrics-listen", allow_off=True),
        dispatcher=dispatcher,
        store_batch_ms=_int_param(values["store-batch-ms"], where["store-batch-ms"], "store-batch-ms", 0, 60000),
        store_max_batch=_int_param(values["store-max-batch"], where["store-max-batch"], "store-max-batch", 1, 1_000_000),
        db_dir=values["db-dir"] or ".",
        config_source=source,
        config_dsn=values["config-dsn"].strip(),
        **cluster,
    )


def _seconds_param(value: str, where: str, param: str, low: float, high: float) -> float:
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = math.nan
    if not low <= seconds <= high:  # NaN fails too
        raise ConfigError(where, param, f"{value!r} is not a number of seconds in {low:g}..{high:g}", f"{low:g}..{high:g}")
    return seconds


def _read_cluster(values: dict[str, str], where: dict[str, str], outbound: Address) -> dict:
    """The ``cluster*`` settings (docs/cluster.md); the PostgreSQL check is ``check_cluster``."""
    text = values["cluster"].strip().lower()
    if text not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        raise ConfigError(where["cluster"], "cluster", f"{values['cluster']!r} is not a boolean", "true | false")
    enabled = text in ("true", "yes", "on", "1")
    interval = _seconds_param(values["cluster-interval"], where["cluster-interval"], "cluster-interval", 0.05, 60)
    stale = _seconds_param(values["cluster-stale-after"], where["cluster-stale-after"], "cluster-stale-after", 0.2, 3600)
    if stale <= 2 * interval:
        raise ConfigError(where["cluster-stale-after"], "cluster-stale-after",
                          f"{stale:g} s is not more than twice cluster-interval ({interval:g} s)",
                          f"more than {2 * interval:g}")
    address = parse_address(values["cluster-address"], where["cluster-address"], "cluster-address", allow_off=True)
    if enabled and address is None and outbound.host in ("0.0.0.0", "::", ""):
        raise ConfigError(where["cluster-address"], "cluster-address",
                          f"outbound-listen {outbound.host}:{outbound.port} is not an address other nodes can reach",
                          "this node's reachable HOST:PORT for the FreeSWITCH boxes, e.g. 10.0.0.5:8040")
    return {"cluster": enabled, "cluster_address": address, "cluster_interval": interval,
            "cluster_stale_after": stale, "cluster_where": where["cluster"]}


def check_cluster(ccfast: CcfastSettings, database: dsnmod.DatabaseTarget) -> None:
    """``cluster = true`` needs PostgreSQL (``odbc-dsn``): SQLite is one process by nature."""
    if ccfast.cluster and database.engine not in ("postgres", "postgresql"):
        raise ConfigError(ccfast.cluster_where or "(cluster)", "cluster",
                          f"cluster mode needs a PostgreSQL database, but the store is {database.engine}",
                          "odbc-dsn = pgsql://hostaddr=... dbname=... user=... (every node the same database)")


def _database(settings: Settings, where: dict[str, Node], db_dir: str, path: str) -> dsnmod.DatabaseTarget:
    for key, value in (("odbc-dsn", settings.odbc_dsn), ("dbname", settings.dbname)):
        if value and unexpanded(value):
            node = where.get(key)
            raise ConfigError(
                node.where if node else path, key,
                f"uses the FreeSWITCH variable $${{{unexpanded(value)[0]}}}, which ccfast cannot expand",
                f'the value written out, or <X-PRE-PROCESS cmd="set" data="{unexpanded(value)[0]}=..."/> in this file',
            )
    try:
        return dsnmod.database_target(settings.odbc_dsn, settings.dbname, db_dir)
    except dsnmod.DsnError as exc:
        node = where.get("odbc-dsn")
        raise ConfigError(node.where if node else path, "odbc-dsn", str(exc)) from None


def _xml(path: str | Path | None, text: str | bytes | None, name: str) -> Node:
    try:
        if text is not None:
            return parse_text(text, name)
        return parse_file(path)  # type: ignore[arg-type]
    except XmlError as exc:
        raise ConfigError(f"{exc.file}:{exc.line}", None, f"XML error at column {exc.col}: {exc.reason}") from None


def load_config(path: str | Path, ccfast_path: str | Path | None = None, *, text: str | bytes | None = None,
                ccfast_text: str | bytes | None = None) -> Config:
    """Read ``callcenter.conf.xml`` (and optionally ccfast's file). Raises ConfigError.

    ``text``/``ccfast_text`` parse the given content instead of reading the files (tests).
    """
    path = str(path)
    root = _xml(path, text, path)
    cfg = _find_configuration(root, CONFIG_NAME)
    if cfg is None:
        raise ConfigError(f"{path}:{root.line}", None, f'no <configuration name="{CONFIG_NAME}"> element',
                          f'<configuration name="{CONFIG_NAME}"> as the root, or inside <document><section name="configuration">')
    variables = preprocess_vars(root)
    warnings: list[ConfigWarning] = []

    ccfast_block = cfg.child("ccfast") or _find_configuration(root, CCFAST_CONFIG_NAME)
    if ccfast_path is not None or ccfast_text is not None:
        cpath = str(ccfast_path) if ccfast_path is not None else "<ccfast>"
        croot = _xml(ccfast_path, ccfast_text, cpath)
        found = _find_configuration(croot, CCFAST_CONFIG_NAME)
        if found is None and croot.tag == "ccfast":
            found = croot
        if found is None:
            raise ConfigError(f"{cpath}:{croot.line}", None, f'no <configuration name="{CCFAST_CONFIG_NAME}"> element',
                              f'<configuration name="{CCFAST_CONFIG_NAME}"> or <ccfast> as the root')
        if ccfast_block is not None:
            warnings.append(ConfigWarning(ccfast_block.where, f"ccfast settings here are ignored: {cpath} is used"))
        variables = {**variables, **preprocess_vars(croot)}
        ccfast_block = found
    ccfast = read_ccfast(ccfast_block, variables)

    settings, where = _read_settings(cfg, variables, warnings)
    queues = _read_queues(cfg, warnings)
    agents = _read_agents(cfg, warnings)
    tiers = _read_tiers(cfg, warnings)
    queue_names = {q.name.lower() for q in queues}
    for tier in tiers:
        if tier.queue is not None and tier.queue.lower() not in queue_names:
            warnings.append(ConfigWarning(tier.where, f"tier {tier.agent}/{tier.queue}: queue {tier.queue!r} is not defined in <queues>; the tier is not added"))
    database = _database(settings, where, ccfast.db_dir, path)
    check_cluster(ccfast, database)
    return Config(path, settings, queues, agents, tiers, ccfast, database, warnings,
                  str(ccfast_path) if ccfast_path is not None else None, (text, ccfast_text))


# -- config in the database (deployment-notes.md) ---------------------------------------------

# cc_queues column -> queue param, where the name is not just "_" -> "-"
DB_QUEUE_COLUMNS = {
    "max_wait_time_wna": "max-wait-time-with-no-agent",
    "max_wait_time_wna_tr": "max-wait-time-with-no-agent-time-reached",
    "tier_rule_wait_ml": "tier-rule-wait-multiply-level",
}
DB_AGENT_COLUMNS = ("type", "contact", "status", "max_no_answer", "wrap_up_time", "reject_delay_time",
                    "busy_delay_time", "no_answer_delay_time")
# settings that the layout keeps in cc_agents rows (the first row by id decides)
DB_AGENT_SETTINGS = ("reserve_agents", "truncate_agents_on_load", "truncate_tiers_on_load")


def _db_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _settings_params(settings: Settings) -> dict[str, str]:
    """``Settings`` back to ``<settings>`` params (name -> text), unset values left out."""
    out: dict[str, str] = {}
    for field in dataclasses.fields(Settings):
        name, value = field.name.replace("_", "-"), getattr(settings, field.name)
        if value is not None and name in SETTINGS_PARAMS:
            out[name] = _db_text(value)
    return out


def _by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: (row.get("id") is None, row.get("id") or 0))


def config_from_db_rows(queues: list[dict], agents: list[dict], tiers: list[dict], settings: list[dict],
                        ccfast: CcfastSettings, *, source: str = "database", db_dir: str | None = None,
                        base_settings: Settings | None = None) -> Config:
    """Build a Config from ``cc_queues``/``cc_agents``/``cc_tiers``/``cc_settings`` rows.

    Rows are dicts keyed by column name (``asyncpg.Record`` converted with ``dict``). Column
    names map to params one to one with ``_`` → ``-``, except ``max_wait_time_wna`` →
    ``max-wait-time-with-no-agent``, ``max_wait_time_wna_tr`` →
    ``max-wait-time-with-no-agent-time-reached``, ``tier_rule_wait_ml`` →
    ``tier-rule-wait-multiply-level``. NULL means "not set" (the default applies). Values such as
    ``$${hold_music}`` are kept verbatim. Rows are taken in ``id`` order.

    ``base_settings`` (the XML file's ``<settings>``) are the starting point: a setting that the
    rows set (non-NULL) wins over it.
    """
    warnings: list[ConfigWarning] = []
    settings_obj = Settings()
    where: dict[str, Node] = {}
    first_settings = _by_id(settings)[:1]
    first_agent = _by_id(agents)[:1]
    merged: dict[str, str] = _settings_params(base_settings) if base_settings is not None else {}
    for row in first_agent:
        for column in DB_AGENT_SETTINGS:
            if row.get(column) is not None:
                merged[column.replace("_", "-")] = _db_text(row[column])
    for row in first_settings:
        for column, value in row.items():
            if column != "id" and value is not None:
                merged[column.replace("_", "-")] = _db_text(value)
    fake = Node("settings", {}, 0, f"{source}:cc_settings")
    for name, value in merged.items():
        fake.children.append(Node("param", {"name": name, "value": value}, 0, f"{source}:cc_settings"))
    holder = Node("configuration", {}, 0, source, [fake])
    settings_obj, where = _read_settings(holder, {}, warnings)

    queue_sources: list[QueueSource] = []
    seen: dict[str, str] = {}
    for row in _by_id(queues):
        name = row.get("name")
        here = f"{source}:cc_queues id={row.get('id')}"
        if not name:
            warnings.append(ConfigWarning(here, "queue row without a name is ignored"))
            continue
        if name.lower() in seen:
            raise ConfigError(here, f"queue {name}", f"duplicate queue name (first at {seen[name.lower()]})", "each queue name once")
        seen[name.lower()] = here
        params: dict[str, str] = {}
        for column, value in row.items():
            if column in ("id", "name") or value is None:
                continue
            pname = DB_QUEUE_COLUMNS.get(column, column.replace("_", "-"))
            if pname not in PARAM_NAMES:
                warnings.append(ConfigWarning(here, f"queue {name}: column {column!r} is not a queue param; ignored"))
                continue
            text = _db_text(value)
            if text == "":
                continue  # as in XML: an empty value means "not set"
            params[pname] = text
            for problem in build_queue_params(name, {pname: text})[1]:
                warnings.append(ConfigWarning(here, problem))
        queue_sources.append(QueueSource(name, params, here))

    agent_cfgs: list[AgentConfig] = []
    for row in _by_id(agents):
        here = f"{source}:cc_agents id={row.get('id')}"
        if not row.get("name"):
            warnings.append(ConfigWarning(here, "agent row without a name is ignored"))
            continue
        values = {column: _db_text(row.get(column)) for column in DB_AGENT_COLUMNS}
        agent_cfgs.append(AgentConfig(name=row["name"], where=here, **values))

    tier_cfgs: list[TierConfig] = []
    for row in _by_id(tiers):
        here = f"{source}:cc_tiers id={row.get('id')}"
        tier = TierConfig(_db_text(row.get("agent")), _db_text(row.get("queue")), _db_text(row.get("level")),
                          _db_text(row.get("position")), here)
        if tier.agent is None or tier.queue is None:
            warnings.append(ConfigWarning(here, "tier row needs agent and queue; ignored"))
            continue
        tier_cfgs.append(tier)

    database = _database(settings_obj, where, db_dir or ccfast.db_dir, source)
    check_cluster(ccfast, database)
    return Config(source, settings_obj, queue_sources, agent_cfgs, tier_cfgs, ccfast, database, warnings,
                  origin="database")


# -- applying the config to a Core (§2.4-§2.6) ------------------------------------------------


def _is_core_error(exc: BaseException) -> bool:
    # the Cython core and the SQL oracle each define a CoreError; accept either
    return type(exc).__name__ == "CoreError"


def build_queue(cfg: Config, name: str) -> QueueParams | None:
    return cfg.queue_params(name)


def resolve_queue(core, cfg: Config | None, name: str) -> bool:
    """``get_queue``: a queue in memory, or lazily built from the XML (without agents/tiers)."""
    if core.queue_params(name) is not None:
        return True
    params = cfg.queue_params(name) if cfg is not None else None
    if params is None:
        return False
    core.queue_set(params)
    return True


def apply_agent(core, agent: AgentConfig, name: str, now: int) -> list:
    """``load_agent`` for one element under the name as asked. Returns offers to cancel."""
    cancels: list = []
    if agent.type is None or S.canonical(agent.type, S.AGENT_TYPES) is None:
        return cancels  # cc_agent_add checks the type first: nothing is applied
    existed = False
    try:
        core.agent_add(name, agent.type, now)
    except Exception as exc:
        if not _is_core_error(exc):
            raise
        if str(exc) != "Agent already exist!":
            return cancels  # invalid type: nothing happens
        existed = True
    for attr, key in AGENT_ATTRS:
        value = getattr(agent, key)
        if value is None:
            continue
        try:
            cancels.extend(core.agent_set(key, name, value, now) or [])
        except Exception as exc:
            if not _is_core_error(exc):
                raise  # invalid values are silently ignored, as in mod_callcenter
    if existed:
        try:
            core.agent_set("type", name, agent.type, now)
        except Exception as exc:
            if not _is_core_error(exc):
                raise
    return cancels


def load_agent(core, cfg: Config, name: str, now: int) -> list:
    """``agent reload <name>``: re-apply that agent's element (nothing if absent)."""
    agent = cfg.agent(name)
    return apply_agent(core, agent, name, now) if agent is not None else []


def apply_all_agents(core, cfg: Config, now: int) -> list:
    cancels: list = []
    for agent in cfg.agents:
        # load_agent looks the name up again: with duplicates the first element wins
        first = cfg.agent(agent.name)
        cancels.extend(apply_agent(core, first or agent, agent.name, now))
    return cancels


def _apply_tier(core, cfg: Config, tier: TierConfig, now: int) -> None:
    """``load_tier``: add when missing, else set level/position (absent → 1)."""
    queue, agent = tier.queue or "", tier.agent or ""
    level = atoi(tier.level) if tier.level else 1
    position = atoi(tier.position) if tier.position else 1
    if not resolve_queue(core, cfg, queue):
        return  # add needs the queue; an update would fail on it as well
    try:
        core.tier_add(queue, agent, level, position)
        return
    except Exception as exc:
        if not _is_core_error(exc):
            raise
        if str(exc) != "Tier already exist!":
            return
    for key, value in (("level", tier.level or "1"), ("position", tier.position or "1")):
        try:
            core.tier_set(key, queue, agent, value)
        except Exception as exc:
            if not _is_core_error(exc):
                raise


def load_tiers(core, cfg: Config, now: int, load_all: bool = True, queue: str | None = None,
               agent: str | None = None) -> bool:
    """``load_tiers``: True when at least one XML tier matched (``tier reload``'s ``+OK``)."""
    matched = False
    for tier in cfg.tiers:
        tq, ta = tier.queue or "", tier.agent or ""
        if load_all:
            hit = True
        elif agent and queue:
            hit = ta.lower() == agent.lower() and tq.lower() == queue.lower()
        elif not agent and queue is not None:
            hit = tq.lower() == queue.lower()
        else:
            hit = False
        if hit:
            matched = True
            _apply_tier(core, cfg, tier, now)
    return matched


def load_queue(core, cfg: Config, name: str, now: int) -> tuple[bool, list]:
    """``queue load <name>``: build from XML (counters reset), then all XML agents and tiers.

    Returns (found, offers to cancel)."""
    params = cfg.queue_params(name)
    if params is None:
        return False, []
    core.queue_set(params)
    cancels = apply_all_agents(core, cfg, now)
    load_tiers(core, cfg, now, load_all=True)
    return True, cancels


def apply_startup(core, cfg: Config, now: int) -> list:
    """Module load (§2.6): every queue, then all XML agents, then all XML tiers.

    (The store does the startup reset and ``truncate-*-on-load`` before this.)"""
    for src in cfg.queue_sources:
        core.queue_set(build_queue_params(src.name, src.params)[0])
    cancels = apply_all_agents(core, cfg, now)
    load_tiers(core, cfg, now, load_all=True)
    return cancels
