"""``config-source = database``: queues, agents, tiers and settings from the ``cc_*`` tables.

The layout is the one of deployment-notes.md ("Configuration kept in the database"):
``cc_queues``, ``cc_agents``, ``cc_tiers``, ``cc_settings``. The rows are mapped by
:func:`ccfast.config.config_from_db_rows`, after :func:`check_config_rows` has refused what cannot
work (a missing table or key column, a row without a name, a duplicate name, a tier of a queue that
is not in ``cc_queues``) with a :class:`~ccfast.config.ConfigError` naming the table and the row's
``id``. Value-level leniency is mod_callcenter's (a bad integer keeps the default, with a warning).

:class:`DbConfigSource` owns the reading:

* ``await load()`` at start: connects with retry and backoff (a database that is down is logged
  and waited for, never a crash), reads, maps; raises ``ConfigError`` on bad rows;
* ``await refresh()`` before a reload command: reads again in the calling trio task (the DB round
  trip is awaited, the trio loop keeps running); the result is kept for this task only, so the
  synchronous ``reload()`` that ``ApiState.reload_config`` calls next returns exactly it;
* ``reload()`` (sync): that fresh Config, or raises the ``ConfigError`` of the failed read.

Settings (``cc_settings``, the settings columns of ``cc_agents``) are read at start only, like
mod_callcenter's ``<settings>`` (§2.2); the XML file's ``<settings>`` are their base. Where the
store is: with ``config-dsn`` empty the ``cc_*`` tables are read from the store's own database (the
XML's ``odbc-dsn``/``dbname``), and ``odbc_dsn``/``dbname`` in ``cc_settings`` are ignored with a
warning when they name another database; with ``config-dsn`` set, ``cc_settings`` may name the store.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging

import trio

from .. import config as configmod
from .. import dsn as dsnmod
from .base import StoreError
from .recovery import CONFIG_TABLES

log = logging.getLogger("ccfast.config")

QUEUES, AGENTS, TIERS, SETTINGS = CONFIG_TABLES
# columns without which a table cannot be used
REQUIRED_COLUMNS = {QUEUES: ("name",), AGENTS: ("name", "type"), TIERS: ("agent", "queue"), SETTINGS: ()}
REFRESH_TIMEOUT_S = 10.0

# the result of the last refresh() in this trio task: a Config or the ConfigError
_FRESH: contextvars.ContextVar = contextvars.ContextVar("ccfast_db_config_fresh", default=None)


def _unique_names(label: str, table: str, tables, what: str, hint: str, once: str) -> dict[str, str]:
    """Every row of ``table`` has a name, each name (any case) once: {lower name: where}."""
    names: dict[str, str] = {}
    for i, row in enumerate(tables[table] or []):
        where = _row_where(label, table, row, i)
        name = row.get("name")
        if not isinstance(name, str) or not name.strip():
            raise configmod.ConfigError(where, "name", f"{what} without a name ({name!r})", hint)
        if name.lower() in names:
            raise configmod.ConfigError(where, f"{what} {name}", f"duplicate {what} name (first at {names[name.lower()]})",
                                        once)
        names[name.lower()] = where
    return names


def _row_where(label: str, table: str, row: dict, index: int) -> str:
    key = f"id={row['id']}" if row.get("id") is not None else f"row {index + 1}"
    return f"{label}:{table} {key}"


def check_config_rows(tables: dict[str, list[dict] | None], columns: dict[str, list[str]], label: str) -> None:
    """Refuse rows that cannot work; ``ConfigError`` names the table, row id and column.

    ``tables``: rows per table (None = the table does not exist); ``columns``: its column names.
    """
    for table in CONFIG_TABLES:
        if tables.get(table) is None:
            raise configmod.ConfigError(label, table, "table not found",
                                        "the cc_queues/cc_agents/cc_tiers/cc_settings tables of deployment-notes.md")
        missing = [c for c in REQUIRED_COLUMNS[table] if c not in columns.get(table, ())]
        if missing:
            raise configmod.ConfigError(f"{label}:{table}", ", ".join(missing), "column missing",
                                        f"a table with the column(s) {', '.join(REQUIRED_COLUMNS[table])}")
    queue_names = _unique_names(label, QUEUES, tables, "queue", "a queue name, e.g. support@default",
                                "each queue name once (names compare case-insensitively)")
    _unique_names(label, AGENTS, tables, "agent", "an agent name, e.g. 1000@default", "each agent name once")
    for i, row in enumerate(tables[AGENTS] or []):
        if row.get("type") is None:
            raise configmod.ConfigError(_row_where(label, AGENTS, row, i), f"agent {row.get('name')}: type", "NULL",
                                        "callback | uuid-standby")
    for i, row in enumerate(tables[TIERS] or []):
        where = _row_where(label, TIERS, row, i)
        agent, queue = row.get("agent"), row.get("queue")
        for column, value in (("agent", agent), ("queue", queue)):
            if not isinstance(value, str) or not value.strip():
                raise configmod.ConfigError(where, column, f"tier without {column} ({value!r})", f"the {column}'s name")
        if queue.lower() not in queue_names:
            raise configmod.ConfigError(where, f"tier {agent}/{queue}", f"queue {queue!r} is not in {QUEUES}",
                                        "a queue name of cc_queues")
        for column in ("level", "position"):
            value = row.get(column)
            if value is not None and not isinstance(value, int) and not str(value).strip().lstrip("-").isdigit():
                raise configmod.ConfigError(where, f"tier {agent}/{queue}: {column}", f"{value!r} is not an integer",
                                            "an integer (1 = first)")


def _same_database(a: dsnmod.DatabaseTarget, b: dsnmod.DatabaseTarget) -> bool:
    return (a.engine, a.sqlite_path, a.connect_kwargs) == (b.engine, b.sqlite_path, b.connect_kwargs)


class DbConfigSource:
    """Reads the configuration from the ``cc_*`` tables (see the module docstring).

    ``base``: the Config read from callcenter.conf.xml (its ``<settings>``, ccfast's settings, the
    store's database). ``store``: where the tables are — the store itself when ``config-dsn`` is
    empty (``shared``), else a store of its own, closed by ``close()``.
    """

    def __init__(self, base: configmod.Config, store, *, shared: bool) -> None:
        self.base = base
        self.store = store
        self.shared = shared
        self.label = "database" if shared else f"config-dsn {store.describe()}"
        self.current: configmod.Config | None = None
        self.loads = 0  # successful reads (start + reloads)

    @classmethod
    def open(cls, base: configmod.Config, store_factory) -> "DbConfigSource":
        """The source for ``base`` (``config-source = database``); ``store_factory(target)`` makes
        a store — with ``config-dsn`` empty the caller must then use ``source.store`` as its store."""
        dsn = base.ccfast.config_dsn
        if not dsn:
            return cls(base, store_factory(base.database), shared=True)
        try:
            target = dsnmod.parse_dsn(dsn, base.ccfast.db_dir)
        except dsnmod.DsnError as exc:
            raise configmod.ConfigError(base.path, "config-dsn", str(exc)) from None
        if target.in_memory:
            raise configmod.ConfigError(base.path, "config-dsn", "an in-RAM SQLite database holds no configuration",
                                        "a PostgreSQL DSN or an SQLite file; empty = the store's database")
        return cls(base, store_factory(target), shared=False)

    async def _read(self) -> configmod.Config:
        try:
            tables = await self.store.fetch_config_tables(required=False)
            columns = {t: list(rows[0]) if rows else (await self.store.columns(t) or [])
                       for t, rows in tables.items() if rows is not None}
        except StoreError as exc:
            raise configmod.ConfigError(self.label, None, f"cannot read the configuration tables: {exc}") from None
        check_config_rows(tables, columns, self.label)
        base = self.base
        cfg = configmod.config_from_db_rows(
            tables[QUEUES], tables[AGENTS], tables[TIERS], tables[SETTINGS], base.ccfast,
            source=self.label, base_settings=base.settings,
        )
        cfg.ccfast_path = base.ccfast_path
        if self.shared and not _same_database(cfg.database, base.database):
            cfg.warnings.append(configmod.ConfigWarning(
                f"{self.label}:{SETTINGS}",
                f"odbc_dsn/dbname name another database than the one holding these tables; the store stays in "
                f"{self.store.describe()} (set config-dsn to keep the configuration elsewhere)"))
            cfg.settings = dataclasses.replace(cfg.settings, odbc_dsn=base.settings.odbc_dsn, dbname=base.settings.dbname)
            cfg.database = base.database
        return cfg

    async def load(self) -> configmod.Config:
        """At start: wait for the database (retry with backoff, logged), then read and map."""
        await self.store.connect_with_retry()
        cfg = await self._read()
        if self.base.queue_sources or self.base.agents or self.base.tiers:
            cfg.warnings.append(configmod.ConfigWarning(
                self.base.path, "config-source is database: the <queues>, <agents> and <tiers> of this file are ignored"))
        self.current = cfg
        self.loads += 1
        return cfg

    async def refresh(self) -> configmod.Config | configmod.ConfigError:
        """Read the tables again (for a reload command); the result is what ``reload()`` returns
        in this trio task. Settings keep their start values (read at start only, §2.2)."""
        result: configmod.Config | configmod.ConfigError
        try:
            with trio.fail_after(REFRESH_TIMEOUT_S):
                cfg = await self._read()
        except configmod.ConfigError as exc:
            result = exc
        except trio.TooSlowError:
            result = configmod.ConfigError(self.label, None, f"the database did not answer within {REFRESH_TIMEOUT_S:g} s")
        else:
            start = self.current
            if start is not None:
                if cfg.settings != start.settings:
                    cfg.warnings.append(configmod.ConfigWarning(
                        f"{self.label}:{SETTINGS}", "settings changed; they take effect at the next start"))
                cfg.settings, cfg.database = start.settings, start.database
            self.current = cfg
            self.loads += 1
            result = cfg
        if isinstance(result, configmod.ConfigError):
            log.error("config: reload from %s failed: %s", self.label, result)
        _FRESH.set(result)
        return result

    def reload(self) -> configmod.Config:
        """``ApiState.reload_config``: the Config of this task's last ``refresh()`` (else the
        newest one read); raises its ConfigError when that read failed."""
        fresh = _FRESH.get()
        if fresh is None:
            fresh = self.current
        if isinstance(fresh, configmod.ConfigError):
            raise fresh
        if fresh is None:
            raise configmod.ConfigError(self.label, None, "the configuration tables were never read")
        return fresh

    async def close(self) -> None:
        if not self.shared:
            with trio.CancelScope(shield=True):
                await self.store.close()


# -- which control-port commands re-read the configuration -------------------------------------

_RELOADING = {("queue", "load"), ("queue", "reload"), ("agent", "reload"), ("tier", "reload")}


def rereads_config(command: str, args: str | None) -> bool:
    """Whether ``api <command> <args>`` re-reads the configuration: ``callcenter_config queue
    load|reload``, ``agent reload``, ``tier reload`` (the JSON API has no such commands)."""
    if command.lower() != "callcenter_config":
        return False
    words = (args or "").lower().split()
    return len(words) >= 2 and (words[0], words[1]) in _RELOADING
