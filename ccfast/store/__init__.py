"""Persistence of the ``agents``/``tiers``/``members`` tables: SQLite (default, in RAM) or PostgreSQL.

Public API (see docs/store.md):

* ``SqliteStore(path=None)`` / ``PostgresStore(dsn=None, **asyncpg_connect_kwargs)`` and
  :func:`open_store` — trio-facing stores (need a trio-asyncio loop: ``async with aio.open_loop():``);
* ``Writer`` / ``open_writer`` / ``WriterConfig`` — the write-behind task fed by ``submit(entries)``;
* ``startup_reset`` (pure, §1.5), ``Store.startup_reset`` (SQL), ``Store.load_rows``,
  ``Store.fetch_config_tables``;
* errors ``StoreError``, ``StoreUnavailable``, ``DataRejected``, ``SchemaMissing``, ``SchemaError``.
"""

from __future__ import annotations

from typing import Any

from .base import DataRejected, Rows, SchemaMissing, StoreError, StoreUnavailable
from .engine import Store
from .postgres import PostgresStore
from .recovery import CONFIG_TABLES, startup_reset, startup_reset_statements
from .schema import COLUMNS, KEY_COLUMNS, TABLES, SchemaError
from .sqlite import SqliteStore
from .writer import Writer, WriterConfig, WriterStats, open_writer

__all__ = [
    "CONFIG_TABLES", "COLUMNS", "DataRejected", "KEY_COLUMNS", "PostgresStore", "Rows", "SchemaError",
    "SchemaMissing", "SqliteStore", "Store", "StoreError", "StoreUnavailable", "TABLES", "Writer",
    "WriterConfig", "WriterStats", "open_store", "store_from_target", "open_writer", "startup_reset", "startup_reset_statements",
]


def open_store(engine: str, **target: Any) -> Store:
    """A store for an already-parsed target.

    ``open_store("sqlite", path=None | "/dev/shm/callcenter.db")`` or
    ``open_store("postgresql", dsn="postgresql://…")`` / ``open_store("postgresql", host=…, port=…,
    user=…, password=…, database=…)`` (asyncpg ``connect`` keyword arguments).
    """
    if engine == "sqlite":
        return SqliteStore(**target)
    if engine in ("postgresql", "postgres", "pgsql"):
        return PostgresStore(**target)
    raise ValueError(f"unknown store engine {engine!r}: use 'sqlite' or 'postgresql'")


def store_from_target(target: Any, **options: Any) -> Store:
    """A store for a :class:`ccfast.dsn.DatabaseTarget` (what ``odbc-dsn``/``dbname`` parse to).

    ``options`` go to the store (``op_timeout``, ``connect_timeout``).
    """
    if target.engine == "sqlite":
        return SqliteStore(target.sqlite_path, **options)
    if target.engine in ("postgres", "postgresql"):
        return PostgresStore(None, **options, **target.connect_kwargs)
    raise ValueError(f"unknown store engine {target.engine!r}")
