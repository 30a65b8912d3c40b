"""SQL on both dialects: the statement rewriting of waiaas.db.portable, the Python reading of
``spend`` documents against SQLite's json_each, and a scan of the sources for SQLite-only SQL
outside the storage engine."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col

from waiaas.db.portable import as_json, dbapi_sql, text_for, unhinted
from waiaas.db.tables import SessionRow
from waiaas.services.policies import _spend_pairs

SRC = Path(__file__).resolve().parents[3] / "src" / "waiaas"


@pytest.mark.parametrize(
    ("sql", "want"),
    [
        ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
        ("SELECT a FROM t WHERE b = :agent", "SELECT a FROM t WHERE b = %(agent)s"),
        ("SELECT ':x', '?', \"a?b\" FROM t", "SELECT ':x', '?', \"a?b\" FROM t"),
        ("SELECT 'it''s ?' || ? FROM t", "SELECT 'it''s ?' || %s FROM t"),
        ("SELECT (a % 3) FROM t WHERE b = ?", "SELECT (a %% 3) FROM t WHERE b = %s"),
        ("SELECT a::text FROM t WHERE b = :b", "SELECT a::text FROM t WHERE b = %(b)s"),
        (
            "SELECT a FROM t AS x INDEXED BY idx_t_a WHERE x.a = :a",
            "SELECT a FROM t AS x WHERE x.a = %(a)s",
        ),
    ],
)
def test_dbapi_sql_rewrites_placeholders_for_postgresql(sql: str, want: str) -> None:
    assert dbapi_sql(sql, "postgresql") == want
    assert dbapi_sql(sql, "sqlite") == sql  # SQLite takes the statement as written


def test_hints_stay_on_sqlite_only() -> None:
    sql = "SELECT 1 FROM transactions AS t INDEXED BY idx_transactions_agent_created WHERE 1"
    assert unhinted(sql, "sqlite") == sql
    assert "INDEXED" not in unhinted(sql, "postgresql")
    assert text_for(sql, "postgresql") is text_for(sql, "postgresql")  # compiled once


def test_as_json_casts_on_postgresql_only() -> None:
    expr = func.coalesce(
        as_json(col(SessionRow.usage_stats))["expired_reported"].as_boolean(), False
    )
    on_sqlite = str(expr.compile(dialect=sqlite.dialect()))
    on_pg = str(expr.compile(dialect=postgresql.dialect()))
    assert "JSON_EXTRACT(sessions.usage_stats" in on_sqlite and "CAST(sessions" not in on_sqlite
    assert "CAST(sessions.usage_stats AS JSON) ->>" in on_pg


SPEND_DOCS = [
    '{"native":"5"}',
    '{"native":"5","native":"7"}',  # a key twice: json_each yields both
    '{"a":"1","b":2,"c":null,"d":{"x":"1"},"e":["1"],"f":true}',
    '{"\\u0031x":"\\u0039"}',
    '["1","2"]',
    '"5"',
    "5",
    "null",
    "{}",
    "{not json",
    "",
    '{"a":"٣"}',
    '{"k":"12345678901234567890123456789012345678901234567890123456789012345678901234567890"}',
]


@pytest.mark.parametrize("doc", SPEND_DOCS)
def test_spend_pairs_reads_what_json_each_reads(doc: str) -> None:
    """The Python reading of a ``spend`` document is SQLite's json_each over an object,
    keeping members whose key and value are strings (what the usage triggers sum)."""
    conn = sqlite3.connect(":memory:")
    try:
        want = conn.execute(
            "SELECT je.key, je.value FROM json_each(CASE WHEN json_valid(?) THEN ? END) AS je "
            "WHERE typeof(je.key) = 'text' AND je.type = 'text'",
            (doc, doc),
        ).fetchall()
    finally:
        conn.close()
    assert _spend_pairs(doc) == want
    assert _spend_pairs(None) == []


def test_spend_pairs_of_a_document_json_dumps_wrote() -> None:
    doc = json.dumps({"native": "10", "evm:0xabc": str(10**30)})
    assert _spend_pairs(doc) == [("native", "10"), ("evm:0xabc", str(10**30))]


# Files that may hold SQLite-only SQL: the engine and its dialect-specific DDL.
_DIALECT_FILES = {
    "db/engine.py",
    "db/database.py",
    "db/uow.py",
    "db/migrate.py",
    "db/faults.py",
    "db/usage.py",
    "db/generations.py",
    "db/tables.py",
    "db/portable.py",
}
_SQLITE_ONLY = re.compile(
    r"\browid\b|json_each|json_extract|json_valid|\bGLOB\b|typeof\(|INSERT OR |"
    r"\bIS NOT :|\bIS :|SUM\([a-z_.]+ [<>]",
    re.IGNORECASE,
)


def test_no_sqlite_only_sql_outside_the_storage_engine() -> None:
    """Statements outside the engine run on both dialects: none of SQLite's own functions,
    rowids, ``INSERT OR``, value comparisons with ``IS`` or sums of comparisons."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in _DIALECT_FILES or rel.startswith("db/migrations/"):
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("#") or ('"' not in line and "'" not in line):
                continue  # SQL lives in string literals
            if _SQLITE_ONLY.search(re.sub(r"``[^`]*``", "", line)):  # not in ``doc text``
                found.append(f"{rel}:{no}: {stripped}")
    # the health command reads a SQLite file directly (it opens a path with sqlite3)
    found = [f for f in found if not f.startswith("cli/_ops.py:")]
    assert not found, "\n".join(found)
