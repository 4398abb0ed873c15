"""What operators write in ``odbc-dsn`` / ``dbname``, turned into a database target.

Accepted (reference §2.2, deployment-notes.md "Database"):

* ``pgsql://hostaddr=127.0.0.1 dbname=DB  user=USER password='PASS'`` — libpq keyword/value
  pairs after ``pgsql://`` (any spacing, ``key = value``, single-quoted values with ``\\'`` and
  ``\\\\`` escapes), exactly as mod_pgsql receives them;
* ``pgsql://user:pass@host:5432/db``, ``postgresql://…`` and ``postgres://…`` URLs (also
  ``pgsql://postgresql://…``), with ``?sslmode=…&connect_timeout=…&application_name=…``;
* ``sqlite://path`` (``sqlite://memory://name`` or ``sqlite://:memory:`` → in RAM);
* a value without ``://`` and without ``:`` → an SQLite file, like FreeSWITCH does;
* ``dbname``: a path (contains ``/``) is used as is, a bare name becomes ``<db_dir>/<name>.db``;
* nothing set → SQLite in RAM (ccfast's default; mod_callcenter's is a file, see
  docs/configuration.md).

ODBC (``dsn:user:pass`` or ``odbc://…``) and other engines get a ``DsnError`` that says what to
write instead. Passwords never appear in error messages or in ``repr``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from urllib.parse import parse_qsl, unquote, urlsplit


class DsnError(ValueError):
    """The value cannot name a database ccfast can use; the message says what to write."""


PG_EXAMPLE = "pgsql://hostaddr=127.0.0.1 dbname=callcenter user=USER password='PASS'"
PG_URL_EXAMPLE = "postgresql://USER:PASS@127.0.0.1:5432/callcenter"


@dataclasses.dataclass(frozen=True)
class DatabaseTarget:
    """Where the store keeps the ``agents``/``tiers``/``members`` tables.

    ``engine`` is ``"sqlite"`` or ``"postgres"``. For SQLite, ``sqlite_path`` is a file path or
    ``":memory:"``. For PostgreSQL, ``connect_kwargs`` are keyword arguments for
    ``asyncpg.connect`` (host, port, user, password, database, ssl, timeout, server_settings).
    ``source`` is the value as written, with any password masked.
    """

    engine: str
    sqlite_path: str | None = None
    connect_kwargs: dict = dataclasses.field(default_factory=dict, repr=False)
    source: str = ""

    @property
    def in_memory(self) -> bool:
        return self.engine == "sqlite" and self.sqlite_path == ":memory:"

    def __repr__(self) -> str:
        shown = {k: ("***" if k == "password" else v) for k, v in self.connect_kwargs.items()}
        return f"DatabaseTarget(engine={self.engine!r}, sqlite_path={self.sqlite_path!r}, connect={shown!r})"


MEMORY = DatabaseTarget("sqlite", ":memory:", {}, "")

# libpq keywords ccfast understands, and the asyncpg keyword each becomes.
_PG_KEYS = {
    "host": "host", "hostaddr": "host", "port": "port", "dbname": "database", "user": "user",
    "password": "password", "sslmode": "ssl", "connect_timeout": "timeout",
    "application_name": "application_name", "options": "options",
}
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _mask(text: str) -> str:
    text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text, flags=re.I)
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", text)


def parse_libpq_keyvalue(text: str) -> dict[str, str]:
    """libpq's ``key=value`` connection string: spaces around ``=``, quoted values, escapes."""
    pairs: dict[str, str] = {}
    pos, size = 0, len(text)
    while True:
        while pos < size and text[pos].isspace():
            pos += 1
        if pos >= size:
            return pairs
        start = pos
        while pos < size and not text[pos].isspace() and text[pos] != "=":
            pos += 1
        key = text[start:pos]
        while pos < size and text[pos].isspace():
            pos += 1
        if pos >= size or text[pos] != "=":
            raise DsnError(f'missing "=" after "{key}" in the connection string (write key=value pairs, e.g. {PG_EXAMPLE})')
        pos += 1
        while pos < size and text[pos].isspace():
            pos += 1
        value: list[str] = []
        if pos < size and text[pos] == "'":
            pos += 1
            while True:
                if pos >= size:
                    raise DsnError(f'unterminated quoted value for "{key}" in the connection string')
                char = text[pos]
                if char == "\\" and pos + 1 < size:
                    value.append(text[pos + 1])
                    pos += 2
                elif char == "'":
                    pos += 1
                    break
                else:
                    value.append(char)
                    pos += 1
        else:
            while pos < size and not text[pos].isspace():
                if text[pos] == "\\" and pos + 1 < size:
                    value.append(text[pos + 1])
                    pos += 2
                else:
                    value.append(text[pos])
                    pos += 1
        if not key:
            raise DsnError("empty keyword in the connection string")
        pairs[key] = "".join(value)


def _pg_kwargs(pairs: dict[str, str]) -> dict:
    """libpq keywords → asyncpg.connect keyword arguments."""
    kwargs: dict = {}
    host = hostaddr = None
    for key, value in pairs.items():
        low = key.lower()
        if low not in _PG_KEYS:
            raise DsnError(
                f'unsupported connection keyword "{key}"; supported: {", ".join(sorted(_PG_KEYS))}'
            )
        if low == "host":
            host = value
        elif low == "hostaddr":
            hostaddr = value
        elif low == "port":
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise DsnError(f'port "{value}" is not a number in 1..65535')
            kwargs["port"] = int(value)
        elif low == "sslmode":
            if value not in _SSLMODES:
                raise DsnError(f'sslmode "{value}" is not one of {", ".join(_SSLMODES)}')
            kwargs["ssl"] = value
        elif low == "connect_timeout":
            try:
                kwargs["timeout"] = float(value)
            except ValueError:
                raise DsnError(f'connect_timeout "{value}" is not a number of seconds') from None
        elif low == "application_name":
            kwargs.setdefault("server_settings", {})["application_name"] = value
        elif low == "options":
            # libpq's "-c name=value" list, the only form asyncpg can carry (server_settings)
            for match in re.finditer(r"-c\s*([^\s=]+)=(\S+)", value):
                kwargs.setdefault("server_settings", {})[match.group(1)] = match.group(2)
        else:
            kwargs[_PG_KEYS[low]] = value
    # libpq connects to hostaddr when given (host is then only for TLS/auth names)
    if hostaddr or host:
        kwargs["host"] = hostaddr or host
    return kwargs


def _pg_url(url: str) -> dict:
    parts = urlsplit(url)
    pairs: dict[str, str] = {}
    try:
        if parts.hostname:
            pairs["host"] = unquote(parts.hostname)
        if parts.port is not None:
            pairs["port"] = str(parts.port)
    except ValueError:
        raise DsnError("the port in the URL is not a number in 1..65535") from None
    if parts.username:
        pairs["user"] = unquote(parts.username)
    if parts.password is not None:
        pairs["password"] = unquote(parts.password)
    database = unquote(parts.path.lstrip("/"))
    if database:
        pairs["dbname"] = database
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        pairs[key] = value
    return _pg_kwargs(pairs)


def _odbc_error(value: str) -> DsnError:
    prefix = value[:7] if value.lower().startswith("odbc://") else ""
    parts = value[len(prefix):].split(":")
    dsn_name = parts[0]
    shown = prefix + ":".join(parts[:2] + (["***"] if len(parts) > 2 else []))
    return DsnError(
        f'"{shown}" is an ODBC data source ("{dsn_name}" in odbc.ini); ccfast talks to '
        f"PostgreSQL directly, without ODBC. Write the server's address instead, e.g. "
        f'<param name="odbc-dsn" value="{PG_EXAMPLE}"/> or value="{PG_URL_EXAMPLE}" '
        f"(take host, port and database from the [{dsn_name}] section of odbc.ini)"
    )


def sqlite_file(dbname: str, db_dir: str) -> str:
    """FreeSWITCH's rule for a core-db name: a path is used as is, a name is ``db_dir/name.db``."""
    if "/" in dbname or "\\" in dbname:
        return dbname
    return os.path.join(db_dir, f"{dbname}.db")


def parse_dsn(value: str, db_dir: str = ".") -> DatabaseTarget:
    """Parse an ``odbc-dsn`` value. Raises DsnError for forms ccfast cannot use."""
    text = value.strip()
    if not text:
        raise DsnError("the DSN is empty")
    low = text.lower()
    source = _mask(text)
    if low.startswith("pgsql://"):
        rest = text[8:]
        if rest.lower().startswith(("postgresql://", "postgres://")):
            return DatabaseTarget("postgres", None, _pg_url(rest), source)
        if re.match(r"^\s*[A-Za-z_]+\s*=", rest) or not rest.strip():
            return DatabaseTarget("postgres", None, _pg_kwargs(parse_libpq_keyvalue(rest)), source)
        return DatabaseTarget("postgres", None, _pg_url("postgresql://" + rest), source)
    if low.startswith(("postgresql://", "postgres://")):
        return DatabaseTarget("postgres", None, _pg_url(text), source)
    if low.startswith("sqlite://"):
        path = text[9:]
        if path.lower().startswith("memory://") or path in ("", ":memory:"):
            return DatabaseTarget("sqlite", ":memory:", {}, source)
        return DatabaseTarget("sqlite", sqlite_file(path, db_dir), {}, source)
    if low.startswith("odbc://"):
        raise _odbc_error(text)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        raise DsnError(
            f'database type "{scheme.group(1)}" is not supported; ccfast uses PostgreSQL '
            f'("{PG_EXAMPLE}") or SQLite ("sqlite:///path/callcenter.db")'
        )
    if ":" in text[2:]:  # FreeSWITCH treats "name:user:pass" as ODBC
        raise _odbc_error(text)
    return DatabaseTarget("sqlite", sqlite_file(text, db_dir), {}, source)


def database_target(odbc_dsn: str | None, dbname: str | None, db_dir: str = ".") -> DatabaseTarget:
    """mod_callcenter's choice (§2.2): ``odbc-dsn`` if non-empty, else ``dbname``, else RAM."""
    if odbc_dsn:
        return parse_dsn(odbc_dsn, db_dir)
    if dbname:
        if dbname in (":memory:",) or dbname.lower().startswith("memory://"):
            return MEMORY
        return DatabaseTarget("sqlite", sqlite_file(dbname, db_dir), {}, dbname)
    return MEMORY
