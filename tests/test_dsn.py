"""odbc-dsn / dbname values operators already have (deployment-notes.md, reference §2.2)."""

from __future__ import annotations

import pytest

from ccfast.dsn import DsnError, database_target, parse_dsn, parse_libpq_keyvalue


def test_the_operator_page_form_as_is():
    target = parse_dsn("pgsql://hostaddr=127.0.0.1 dbname=DB  user=USER password='PASS'")
    assert target.engine == "postgres"
    assert target.connect_kwargs == {"host": "127.0.0.1", "database": "DB", "user": "USER", "password": "PASS"}
    assert "PASS" not in repr(target) and "PASS" not in target.source


def test_libpq_quoting_and_spacing():
    pairs = parse_libpq_keyvalue("  host = db.local  port=6432 password='it\\'s a \\\\ secret' user=a\\ b dbname=''")
    assert pairs == {"host": "db.local", "port": "6432", "password": "it's a \\ secret", "user": "a b", "dbname": ""}


def test_hostaddr_wins_over_host_and_extras():
    target = parse_dsn("pgsql://host=name.example hostaddr=10.0.0.5 port=5433 sslmode=require connect_timeout=3 application_name=cc")
    assert target.connect_kwargs == {"host": "10.0.0.5", "port": 5433, "ssl": "require", "timeout": 3.0,
                                     "server_settings": {"application_name": "cc"}}


@pytest.mark.parametrize("value", [
    "postgresql://u:p%40ss@db:5432/cc?sslmode=disable",
    "postgres://u:p%40ss@db:5432/cc?sslmode=disable",
    "pgsql://u:p%40ss@db:5432/cc?sslmode=disable",
    "pgsql://postgresql://u:p%40ss@db:5432/cc?sslmode=disable",
])
def test_urls(value):
    target = parse_dsn(value)
    assert target.engine == "postgres"
    assert target.connect_kwargs == {"host": "db", "port": 5432, "user": "u", "password": "p@ss", "database": "cc", "ssl": "disable"}
    assert "p%40ss" not in target.source


@pytest.mark.parametrize("value, message", [
    ("pgsql://hostaddr=1.2.3.4 dbname", 'missing "="'),
    ("pgsql://password='open", "unterminated"),
    ("pgsql://host=x port=99999", "1..65535"),
    ("pgsql://host=x sslmode=maybe", "sslmode"),
    ("pgsql://host=x keepalives=1", 'unsupported connection keyword "keepalives"'),
    ("mysql://u:p@h/db", 'database type "mysql" is not supported'),
])
def test_bad_values(value, message):
    with pytest.raises(DsnError, match=message):
        parse_dsn(value)


@pytest.mark.parametrize("value", ["callcenter:freeswitch:secret", "odbc://callcenter:freeswitch:secret", "cc:user"])
def test_odbc_gets_a_clear_error(value):
    with pytest.raises(DsnError) as info:
        parse_dsn(value)
    text = str(info.value)
    assert "ODBC" in text and "pgsql://hostaddr=" in text and "postgresql://" in text
    assert "secret" not in text


def test_sqlite_forms(tmp_path):
    assert parse_dsn(f"sqlite://{tmp_path}/cc.db").sqlite_path == f"{tmp_path}/cc.db"
    assert parse_dsn("sqlite://memory://cc").in_memory
    assert parse_dsn("sqlite://:memory:").in_memory
    assert parse_dsn("callcenter", db_dir="/var/db").sqlite_path == "/var/db/callcenter.db"


def test_database_target_choice():
    assert database_target(None, None).in_memory
    assert database_target("", None).in_memory
    assert database_target(None, "/dev/shm/callcenter.db").sqlite_path == "/dev/shm/callcenter.db"
    assert database_target(None, "callcenter", "/data").sqlite_path == "/data/callcenter.db"
    # odbc-dsn, when set, wins over dbname (§2.2)
    assert database_target("pgsql://host=h", "callcenter").engine == "postgres"
