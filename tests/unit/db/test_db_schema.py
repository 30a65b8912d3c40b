"""The schema the migrations build, compared with CORE-02's DDL executed verbatim."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from waiaas.db import Database, generations, migrate, usage
from waiaas.db.engine import make_engine
from waiaas.db.tables import metadata

Fact = tuple[Any, ...]

SPEC_DDL = resources.files("waiaas.db").joinpath("sql/core-02-schema.sql").read_text("utf-8")


# --------------------------------------------------------------------------- helpers


def _strip_comments(sql: str) -> str:
    """Remove ``--`` and ``/* */`` comments outside string literals and quoted names."""
    out: list[str] = []
    i = 0
    while i < len(sql):
        ch = sql[i]
        if ch in "'\"`[":
            close = "]" if ch == "[" else ch
            j = i + 1
            while j < len(sql):
                if sql[j] == close:
                    if close != "]" and j + 1 < len(sql) and sql[j + 1] == close:
                        j += 2  # doubled quote inside a literal
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            nl = sql.find("\n", i)
            i = len(sql) if nl < 0 else nl
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = len(sql) if end < 0 else end + 2
            out.append(" ")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _normalise(sql: str) -> str:
    """Collapse whitespace; no space just inside parentheses."""
    text = re.sub(r"\s+", " ", _strip_comments(sql)).strip()
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))


def _checks(table_sql: str) -> list[str]:
    """The bodies of every ``CHECK (...)`` in a CREATE TABLE statement, normalised."""
    sql = _strip_comments(table_sql)
    found: list[str] = []
    for match in re.finditer(r"\bCHECK\s*\(", sql, re.IGNORECASE):
        depth, i, quote = 1, match.end(), ""
        while depth:
            ch = sql[i]
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            i += 1
        found.append(_normalise(sql[match.end() : i - 1]))
    return found


def schema_facts(path: Path) -> set[Fact]:
    """Every schema fact of a file, one tuple each (alembic's bookkeeping table excluded).

    Facts: ``(table, "table")``, ``(table, "column", name, type, notnull, default, pk)``,
    ``(table, "index", name, unique, columns...)``, ``(table, "fk", parent, from, to,
    on_update, on_delete)``, ``(table, "check", body)``, ``(table, "autoincrement")``,
    ``(table, "trigger", name, sql)``.
    """
    conn = sqlite3.connect(path)
    try:
        facts: set[Fact] = set()
        tables = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name != ?",
            ("alembic_version",),
        ).fetchall()
        for table, sql in tables:
            facts.add((table, "table"))
            for _cid, name, type_, notnull, default, pk in conn.execute(
                'SELECT cid, name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)',
                (table,),
            ):
                facts.add((table, "column", name, type_, notnull, default, pk))
            for _seq, name, unique, _origin, partial in conn.execute(
                "SELECT * FROM pragma_index_list(?)", (table,)
            ):
                cols = tuple(
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM pragma_index_info(?) ORDER BY seqno", (name,)
                    )
                )
                facts.add((table, "index", name, unique, *cols))
                if partial:
                    (index_sql,) = conn.execute(
                        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
                    ).fetchone()
                    where = re.split(r"\bWHERE\b", _strip_comments(index_sql), flags=re.I)[1]
                    facts.add((table, "index_where", name, _normalise(where)))
            for row in conn.execute(
                'SELECT "table", "from", "to", on_update, on_delete '
                "FROM pragma_foreign_key_list(?)",
                (table,),
            ):
                facts.add((table, "fk", *row))
            for body in _checks(sql):
                facts.add((table, "check", body))
            if re.search(r"\bAUTOINCREMENT\b", _strip_comments(sql), re.IGNORECASE):
                facts.add((table, "autoincrement"))
        for name, table, sql in conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"
        ):
            facts.add((table, "trigger", name, _normalise(sql)))
        return facts
    finally:
        conn.close()


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    """A file built by executing CORE-02's DDL verbatim with sqlite3."""
    path = tmp_path / "spec.db"
    conn = sqlite3.connect(path)
    conn.executescript(SPEC_DDL)
    conn.close()
    return path


def _migrated_to(path: Path, target: str) -> Path:
    engine = make_engine(path)
    try:
        migrate.upgrade(engine, str(path), target=target)
    finally:
        engine.dispose()
    return path


CORE_POLICY_CHECK = (
    "type IN ('SPENDING_LIMIT', 'ALLOWED_ADDRESSES', 'TIME_RESTRICTION', 'AUTO_STOP')"
)
HEAD_POLICY_CHECK = (
    "type IN ('SPENDING_LIMIT', 'ALLOWED_ADDRESSES', 'TIME_RESTRICTION', 'AUTO_STOP', "
    "'RATE_LIMIT', 'ALLOWED_TOKENS', 'CONTRACT_WHITELIST', 'METHOD_WHITELIST', "
    "'APPROVED_SPENDERS', 'APPROVE_AMOUNT_LIMIT', 'ALLOWED_NETWORKS')"
)


# --------------------------------------------------------------------------- tests


def test_helpers_extract_checks_comments_and_nested_parentheses() -> None:
    """The CHECK extractor keeps nested parentheses and ignores comments and literals."""
    sql = (
        "CREATE TABLE t (a TEXT -- CHECK (not this)\n"
        "  CHECK (a IN ('x)', 'y') OR (a IS NULL)), b INTEGER CHECK(b > 0))"
    )
    assert _checks(sql) == ["a IN ('x)', 'y') OR (a IS NULL)", "b > 0"]


def test_spec_file_has_the_seven_tables(spec_file: Path) -> None:
    """The verbatim DDL builds the seven CORE-02 tables (the comparison is not vacuous)."""
    facts = schema_facts(spec_file)
    tables = {f[0] for f in facts if f[1] == "table"}
    assert tables == {
        "agents",
        "sessions",
        "transactions",
        "policies",
        "audit_log",
        "pending_approvals",
        "notification_channels",
        "sqlite_sequence",
    }
    assert ("audit_log", "autoincrement") in facts
    assert ("agents", "index", "idx_agents_public_key", 1, "public_key") in facts
    assert ("transactions", "fk", "agents", "agent_id", "id", "NO ACTION", "RESTRICT") in facts
    assert ("policies", "check", CORE_POLICY_CHECK) in facts
    assert sum(1 for f in facts if f[1] == "check") == 6


def test_revision_0001_is_exactly_the_spec(tmp_path: Path, spec_file: Path) -> None:
    """Migration 0001 builds exactly CORE-02's schema: columns, indexes, FKs, CHECKs, AI."""
    migrated = _migrated_to(tmp_path / "m.db", "0001")
    spec, got = schema_facts(spec_file), schema_facts(migrated)
    assert got - spec == set()
    assert spec - got == set()


@pytest.mark.sqlite_only  # the SQLite file's schema
def test_head_differs_from_the_spec_only_as_documented(tmp_path: Path, spec_file: Path) -> None:
    """At head the only differences are those of migrations 0002-0012 (documented list)."""
    head = tmp_path / "head.db"
    Database.open(head).close()
    spec, got = schema_facts(spec_file), schema_facts(head)

    removed = spec - got
    added = got - spec
    assert removed == {
        # rebuilt tables (0003, 0004): new CHECK; SQLite reports the rebuilt id NOT NULL
        ("policies", "check", CORE_POLICY_CHECK),
        ("policies", "column", "id", "TEXT", 0, None, 1),
        ("notification_channels", "check", "type IN ('TELEGRAM', 'DISCORD', 'NTFY')"),
        ("notification_channels", "column", "id", "TEXT", 0, None, 1),
        # 0008: single-column audit indexes replaced by the (..., timestamp) ones below;
        # (agent_id) is a prefix of idx_audit_log_agent_timestamp
        ("audit_log", "index", "idx_audit_log_agent_id", 0, "agent_id"),
        ("audit_log", "index", "idx_audit_log_event_type", 0, "event_type"),
        ("audit_log", "index", "idx_audit_log_severity", 0, "severity"),
    }
    assert added == {
        # 0002: audit_log is append-only
        (
            "audit_log",
            "trigger",
            "audit_log_no_update",
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        ),
        (
            "audit_log",
            "trigger",
            "audit_log_no_delete",
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        ),
        (
            "audit_log",
            "trigger",
            "audit_log_no_replace",
            "CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
            "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        ),
        # 0003: more policy types; budget windows index (0016: with error, see below)
        ("policies", "check", HEAD_POLICY_CHECK),
        ("policies", "column", "id", "TEXT", 1, None, 1),
        _AGENT_CREATED_0016,
        # 0004: WEBHOOK channels
        (
            "notification_channels",
            "check",
            "type IN ('TELEGRAM', 'DISCORD', 'NTFY', 'WEBHOOK')",
        ),
        ("notification_channels", "column", "id", "TEXT", 1, None, 1),
        # 0005: wallet_state
        ("wallet_state", "table"),
        ("wallet_state", "column", "key", "TEXT", 1, None, 1),
        ("wallet_state", "column", "value", "TEXT", 1, None, 0),
        ("wallet_state", "column", "updated_at", "INTEGER", 1, None, 0),
        ("wallet_state", "index", "sqlite_autoindex_wallet_state_1", 1, "key"),
        # 0006: per-asset spend next to the row
        ("transactions", "column", "spend", "TEXT", 0, None, 0),
        # 0007: tamper evidence (audit chain, MACs, signed checkpoints)
        ("audit_log", "column", "prev_hash", "BLOB", 0, None, 0),
        ("audit_log", "column", "row_hash", "BLOB", 0, None, 0),
        ("audit_log", "column", "mac", "BLOB", 0, None, 0),
        ("agents", "column", "owner_mac", "TEXT", 0, None, 0),
        ("policies", "column", "mac", "TEXT", 0, None, 0),
        ("transactions", "column", "integrity", "TEXT", 0, None, 0),
        ("pending_approvals", "column", "mac", "TEXT", 0, None, 0),
        ("audit_checkpoints", "table"),
        ("audit_checkpoints", "column", "id", "INTEGER", 1, None, 1),
        ("audit_checkpoints", "column", "seq", "INTEGER", 1, None, 0),
        ("audit_checkpoints", "column", "head_hash", "TEXT", 1, None, 0),
        ("audit_checkpoints", "column", "created_at", "INTEGER", 1, None, 0),
        ("audit_checkpoints", "column", "wallet_id", "TEXT", 1, None, 0),
        ("audit_checkpoints", "column", "public_key", "TEXT", 1, None, 0),
        ("audit_checkpoints", "column", "signature", "TEXT", 1, None, 0),
        ("audit_checkpoints", "index", "idx_audit_checkpoints_seq", 0, "seq"),
        # 0008: one index per audit filter shape, each ending in timestamp
        ("audit_log", "index", "idx_audit_log_event_timestamp", 0, "event_type", "timestamp"),
        (
            "audit_log",
            "index",
            "idx_audit_log_agent_event_timestamp",
            0,
            "agent_id",
            "event_type",
            "timestamp",
        ),
        ("audit_log", "index", "idx_audit_log_severity_timestamp", 0, "severity", "timestamp"),
        ("audit_log", "index_where", "idx_audit_log_severity_timestamp", "severity != 'info'"),
        (
            "audit_log",
            "index",
            "idx_audit_log_agent_severity_timestamp",
            0,
            "agent_id",
            "severity",
            "timestamp",
        ),
        (
            "audit_log",
            "index_where",
            "idx_audit_log_agent_severity_timestamp",
            "severity != 'info'",
        ),
        ("audit_log", "index", "idx_audit_log_tx_id", 0, "tx_id"),
        ("audit_log", "index_where", "idx_audit_log_tx_id", "tx_id IS NOT NULL"),
        # 0009: usage buckets and the triggers that keep them
        ("usage_buckets", "table"),
        ("usage_buckets", "column", "agent_id", "TEXT", 1, None, 1),
        ("usage_buckets", "column", "start", "INTEGER", 1, None, 2),
        ("usage_buckets", "column", "kind", "INTEGER", 1, None, 3),
        ("usage_buckets", "column", "asset", "TEXT", 1, None, 4),
        *(
            ("usage_buckets", "column", name, "INTEGER", 1, "0", 0)
            for name in (
                "requests",
                "denials",
                "refused",
                "refused_denials",
                "odd",
                *(f"s{i}" for i in range(9)),
            )
        ),
        ("usage_buckets", "column", "mac", "TEXT", 0, None, 0),
        (
            "usage_buckets",
            "index",
            "sqlite_autoindex_usage_buckets_1",
            1,
            "agent_id",
            "start",
            "kind",
            "asset",
        ),
        ("usage_buckets", "index", "idx_usage_buckets_unsealed", 0, "agent_id", "start"),
        ("usage_buckets", "index_where", "idx_usage_buckets_unsealed", "mac IS NULL"),
        *(
            (table, "trigger", name, sql)
            for table, name, sql in [
                ("transactions", "usage_tx_insert", usage.TRIGGERS[0]),
                ("transactions", "usage_tx_delete", usage.TRIGGERS[1]),
                ("transactions", "usage_tx_update", usage.TRIGGERS[2]),
                ("audit_log", "usage_audit_insert", usage.TRIGGERS[3]),
            ]
        ),
        # 0010: the database keystore's records
        ("keystore_records", "table"),
        ("keystore_records", "column", "name", "TEXT", 1, None, 1),
        ("keystore_records", "column", "generation", "INTEGER", 1, None, 0),
        ("keystore_records", "column", "body", "TEXT", 1, None, 0),
        ("keystore_records", "column", "updated_at", "INTEGER", 1, None, 0),
        ("keystore_records", "index", "sqlite_autoindex_keystore_records_1", 1, "name"),
        ("keystore_records", "check", "generation >= 0"),
        # 0011: one agent's refusals and dry runs, by time
        ("audit_log", "index", "idx_audit_log_agent_refusals", 0, "agent_id", "timestamp"),
        (
            "audit_log",
            "index_where",
            "idx_audit_log_agent_refusals",
            "(event_type IN ('REQUEST_REFUSED', 'DRY_RUN') "
            "OR (event_type = 'POLICY_VIOLATION' AND tx_id IS NULL))",
        ),
        # 0014: the agent/status index holds in-flight rows only, the queued_at one queued rows
        (
            "transactions",
            "index_where",
            "idx_transactions_agent_status",
            "status IN ('PENDING', 'QUEUED', 'EXECUTING', 'SUBMITTED')",
        ),
        ("transactions", "index_where", "idx_transactions_queued_at", "queued_at IS NOT NULL"),
        # 0015: the rows not CONFIRMED, by status and by agent and status, newest first
        *_UNCONFIRMED_FACTS,
        # 0012: the generation counters of policies and channels
        *(
            (table, "trigger", name, sql)
            for table, name, sql in zip(
                ("policies",) * 3 + ("notification_channels",) * 3,
                generations.TRIGGER_NAMES,
                generations.DDL,
                strict=True,
            )
        ),
    }


@pytest.mark.sqlite_only  # the SQLite file's schema
def test_upgrading_one_step_at_a_time_ends_at_the_same_schema(tmp_path: Path) -> None:
    """Upgrading one revision at a time ends with the same schema as a fresh head file."""
    stepwise = tmp_path / "steps.db"
    for target in (
        *("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010"),
        *("0011", "0012", "0013", "0014", "0015", "0016"),
    ):
        _migrated_to(stepwise, target)
    fresh = tmp_path / "fresh.db"
    Database.open(fresh).close()
    assert schema_facts(stepwise) == schema_facts(fresh)


@pytest.mark.sqlite_only  # the SQLite file's schema
def test_models_and_migrations_agree(db: Database) -> None:
    """alembic's autogenerate compare finds no difference between tables.py and head."""
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_autogenerate_compare_sees_foreign_key_actions(db: Database) -> None:
    """Reflection reads ON DELETE from the spec's column-level REFERENCES clauses."""
    from sqlalchemy import inspect

    with db.engine.connect() as conn:
        fks = inspect(conn).get_foreign_keys("transactions")
    actions = {tuple(fk["constrained_columns"]): fk["options"] for fk in fks}
    assert actions == {
        ("agent_id",): {"ondelete": "RESTRICT"},
        ("session_id",): {"ondelete": "SET NULL"},
    }


def test_autogenerate_compare_is_not_blind(db: Database) -> None:
    """A model that differs from the database is reported (the compare test has teeth)."""
    from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, Text

    other = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(other)
    sessions = other.tables["sessions"]
    other.remove(sessions)
    Table(
        "sessions",
        other,
        Column("id", Text, primary_key=True, nullable=True),
        Column("agent_id", Text, ForeignKey("agents.id", ondelete="SET NULL"), nullable=False),
        Column("token_hash", Text, nullable=False),
        Column("expires_at", Integer, nullable=False),
        Column("constraints", Text),
        Column("usage_stats", Text),
        Column("revoked_at", Integer),
        Column("created_at", Integer, nullable=False),
    )
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), other)
    kinds = sorted(d[0] for d in diff if isinstance(d, tuple))
    assert kinds == ["add_fk", "remove_fk", "remove_index", "remove_index", "remove_index"]


def test_0008_changes_only_audit_indexes_and_downgrades_exactly(tmp_path: Path) -> None:
    """0008 swaps audit_log indexes and nothing else; its downgrade restores 0007 exactly."""
    at_0007 = schema_facts(_migrated_to(tmp_path / "0007.db", "0007"))
    head = _migrated_to(tmp_path / "0008.db", "0008")
    at_head = schema_facts(head)
    assert {f[:2] for f in at_head ^ at_0007} == {
        ("audit_log", "index"),
        ("audit_log", "index_where"),
    }
    engine = make_engine(head)
    try:
        with engine.connect() as conn, conn.begin():
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007")
    finally:
        engine.dispose()
    assert schema_facts(head) == at_0007


def test_0014_makes_two_transaction_indexes_partial_and_downgrades_exactly(
    tmp_path: Path,
) -> None:
    """0014 adds a WHERE to idx_transactions_agent_status and idx_transactions_queued_at
    (same columns) and changes nothing else; its downgrade restores 0013 exactly."""
    at_0013 = schema_facts(_migrated_to(tmp_path / "0013.db", "0013"))
    head = _migrated_to(tmp_path / "0014.db", "0014")
    assert schema_facts(head) - at_0013 == {
        (
            "transactions",
            "index_where",
            "idx_transactions_agent_status",
            "status IN ('PENDING', 'QUEUED', 'EXECUTING', 'SUBMITTED')",
        ),
        ("transactions", "index_where", "idx_transactions_queued_at", "queued_at IS NOT NULL"),
    }
    assert at_0013 - schema_facts(head) == set()
    engine = make_engine(head)
    try:
        with engine.connect() as conn, conn.begin():
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0013")
    finally:
        engine.dispose()
    assert schema_facts(head) == at_0013


_UNCONFIRMED_FACTS = (
    ("transactions", "index", "idx_transactions_status_unconfirmed", 0, "status", "created_at"),
    ("transactions", "index_where", "idx_transactions_status_unconfirmed", "status <> 'CONFIRMED'"),
    (
        "transactions",
        "index",
        "idx_transactions_agent_unconfirmed",
        0,
        "agent_id",
        "status",
        "created_at",
    ),
    ("transactions", "index_where", "idx_transactions_agent_unconfirmed", "status <> 'CONFIRMED'"),
)


def test_0015_adds_two_partial_transaction_indexes_and_downgrades_exactly(
    tmp_path: Path,
) -> None:
    """0015 adds the two indexes of the rows not CONFIRMED and changes nothing else; its
    downgrade restores 0014 exactly."""
    at_0014 = schema_facts(_migrated_to(tmp_path / "0014.db", "0014"))
    head = _migrated_to(tmp_path / "0015.db", "0015")
    assert schema_facts(head) - at_0014 == set(_UNCONFIRMED_FACTS)
    assert at_0014 - schema_facts(head) == set()
    engine = make_engine(head)
    try:
        with engine.connect() as conn, conn.begin():
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0014")
    finally:
        engine.dispose()
    assert schema_facts(head) == at_0014


_AGENT_CREATED_0003 = (
    "transactions",
    "index",
    "idx_transactions_agent_created",
    0,
    "agent_id",
    "created_at",
)
_AGENT_CREATED_0016 = (*_AGENT_CREATED_0003, "error")


def test_0016_adds_error_to_the_agent_created_index_and_downgrades_exactly(
    tmp_path: Path,
) -> None:
    """0016 replaces idx_transactions_agent_created (agent_id, created_at) by the same index
    with ``error`` last (same name, same leading columns) and changes nothing else; its
    downgrade restores 0015 exactly, and upgrading again gives the same index."""
    at_0015 = schema_facts(_migrated_to(tmp_path / "0015.db", "0015"))
    head = _migrated_to(tmp_path / "0016.db", "0016")
    assert schema_facts(head) - at_0015 == {_AGENT_CREATED_0016}
    assert at_0015 - schema_facts(head) == {_AGENT_CREATED_0003}
    engine = make_engine(head)
    try:
        with engine.connect() as conn, conn.begin():
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0015")
        assert schema_facts(head) == at_0015
        with engine.connect() as conn, conn.begin():
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0016")
    finally:
        engine.dispose()
    assert schema_facts(head) - at_0015 == {_AGENT_CREATED_0016}


def test_audit_records_follow_the_table() -> None:
    """AuditRepository.query maps rows positionally: AuditRecord lists audit_log's columns."""
    from waiaas.db.repositories import AuditRecord
    from waiaas.db.tables import AuditRow

    columns = tuple(c.name for c in AuditRow.__table__.columns)  # type: ignore[attr-defined]
    assert AuditRecord._fields == columns
