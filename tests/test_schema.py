"""``schema.sql`` (the source of truth) and the peewee models in ``gateway/db.py`` agree."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import peewee
import pytest

from gateway import db as dbmod

ROOT = Path(__file__).resolve().parent.parent


def affinity(declared: str) -> str:
    """SQLite's type affinity rules (https://sqlite.org/datatype3.html §3.1)."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def describe(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table -> [(name, affinity, notnull, pk), ...] in column order."""
    con = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {
            t: [
                (name, affinity(decl), bool(notnull), pk)
                for _cid, name, decl, notnull, _default, pk in con.execute(
                    f"PRAGMA table_info({t})"
                )
            ]
            for t in tables
        }
    finally:
        con.close()


def unique_columns(path: Path) -> dict[str, set[str]]:
    """Every table -> the columns that carry a one-column UNIQUE constraint or index."""
    con = sqlite3.connect(path)
    try:
        out: dict[str, set[str]] = {}
        for (table,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ):
            cols: set[str] = set()
            for _seq, index, unique, *_ in con.execute(f"PRAGMA index_list({table})"):
                info = con.execute(f"PRAGMA index_info({index})").fetchall()
                if unique and len(info) == 1:
                    cols.add(info[0][2])
            out[table] = cols
        return out
    finally:
        con.close()


@pytest.fixture
def from_schema(tmp_path: Path) -> Path:
    path = tmp_path / "schema.db"
    con = sqlite3.connect(path)
    con.executescript((ROOT / "schema.sql").read_text())
    con.close()
    return path


@pytest.fixture
def from_models(tmp_path: Path) -> Path:
    path = tmp_path / "models.db"
    db = peewee.SqliteDatabase(str(path))
    with db.bind_ctx(dbmod.MODELS):
        db.create_tables(dbmod.MODELS)
    db.close()
    return path


def test_schema_tables_match_models(from_schema, from_models):
    assert sorted(describe(from_schema)) == sorted(describe(from_models))
    assert sorted(describe(from_schema)) == sorted(m._meta.table_name for m in dbmod.MODELS)


def test_schema_columns_match_models(from_schema, from_models):
    schema, models = describe(from_schema), describe(from_models)
    for table in schema:
        assert schema[table] == models[table], table


def test_schema_unique_columns_match_models(from_schema, from_models):
    assert unique_columns(from_schema) == unique_columns(from_models)
    assert unique_columns(from_schema)["client_keys"] == {"name", "key_hash"}


def test_schema_request_columns_follow_table_order(from_schema):
    columns = [name for name, *_ in describe(from_schema)["requests"]]
    assert columns[0] == "id"
    assert list(dbmod.REQUEST_COLUMNS) == columns[1:]


def test_open_database_applies_schema_to_fresh_file(tmp_path, from_schema):
    path = tmp_path / "sub" / "fresh.db"
    db = dbmod.open_database(path)
    db.close()
    assert describe(path) == describe(from_schema)
    assert path.stat().st_mode & 0o077 == 0  # readable by its owner only
