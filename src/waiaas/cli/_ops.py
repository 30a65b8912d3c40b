"""Operations: ``kill-switch``, ``audit``, ``backup``, ``health``, ``serve-approvals``."""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TextIO, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from waiaas.cli._common import (
    db_path,
    emit_json,
    err,
    fail,
    handle_errors,
    open_wallet,
    out,
    parse_time,
    state,
    table,
    when,
)
from waiaas.errors import InvalidInputError

kill_switch = typer.Typer(help="The kill switch: on (stop everything), off, status.")
audit = typer.Typer(help="The audit log: tail, filter, export (JSONL or CSV).")
keystore = typer.Typer(help="The keystore: migrate-to-database.")

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


# ---------------------------------------------------------------------------- kill switch


@kill_switch.command("on")
@handle_errors
def kill_on(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why (audited, sent to every channel).")],
    json_: Json = False,
) -> None:
    """Stop everything: suspend every agent, revoke every session, cancel queued work."""
    with open_wallet(ctx) as wallet:
        summary = wallet.kill_switch(reason).to_dict()
    if json_:
        emit_json(summary)
    else:
        out().print(f"kill switch ON: {json.dumps(summary, sort_keys=True, default=str)}")


@kill_switch.command("off")
@handle_errors
def kill_off(
    ctx: typer.Context,
    resume_agents: Annotated[
        bool, typer.Option("--resume-agents", help="Resume the agents it suspended.")
    ] = False,
    json_: Json = False,
) -> None:
    """Turn the kill switch off."""
    with open_wallet(ctx) as wallet:
        summary = wallet.release_kill_switch(resume_agents=resume_agents).to_dict()
    if json_:
        emit_json(summary)
    else:
        out().print(f"kill switch OFF: {json.dumps(summary, sort_keys=True, default=str)}")


@kill_switch.command("status")
@handle_errors
def kill_status(ctx: typer.Context, json_: Json = False) -> None:
    """Whether the kill switch is on (exit code 0 either way)."""
    with open_wallet(ctx) as wallet:
        ks = wallet.kill_switch_state()
    if json_:
        emit_json(ks.model_dump(mode="json"))
    elif ks.active:
        out().print(f"kill switch ON since {when(ks.activated_at)} by {ks.actor}: {ks.reason}")
    else:
        out().print("kill switch off")


# ---------------------------------------------------------------------------- audit


def _filters(
    agent: str | None,
    tx_id: str | None,
    event: list[str] | None,
    severity: list[str] | None,
    since: str | None,
    until: str | None,
) -> dict[str, Any]:
    return {
        "agent_id": agent,
        "tx_id": tx_id,
        "event_types": event or None,
        "severities": severity or None,
        "since": parse_time(since, "since"),
        "until": parse_time(until, "until"),
    }


Agent = Annotated[str | None, typer.Option("--agent", help="Only this agent's entries.")]
TxId = Annotated[str | None, typer.Option("--tx", help="Only this transaction's entries.")]
Event = Annotated[list[str] | None, typer.Option("--event", help="Event type (repeatable).")]
Sev = Annotated[list[str] | None, typer.Option("--severity", help="info/warning/critical.")]
Since = Annotated[str | None, typer.Option(help="From (Unix seconds or ISO time).")]
Until = Annotated[str | None, typer.Option(help="Until (Unix seconds or ISO time).")]


def _entry_dict(entry: Any) -> dict[str, Any]:
    data = dict(entry.model_dump(mode="json"))
    data["time"] = when(entry.timestamp)
    return data


def _print_entries(entries: list[Any], json_: bool) -> None:
    if json_:
        emit_json([_entry_dict(e) for e in entries])
        return
    table(
        "Audit entries",
        ["id", "time", "severity", "event", "actor", "agent", "tx", "details"],
        [
            (
                e.id,
                when(e.timestamp),
                e.severity.value,
                e.event_type,
                e.actor,
                e.agent_id,
                e.tx_id,
                json.dumps(e.details, sort_keys=True, default=str),
            )
            for e in entries
        ],
    )


@audit.command("tail")
@handle_errors
def audit_tail(
    ctx: typer.Context,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many (1-1000).")] = 20,
    agent: Agent = None,
    tx_id: TxId = None,
    event: Event = None,
    severity: Sev = None,
    since: Since = None,
    until: Until = None,
    json_: Json = False,
) -> None:
    """The latest entries (oldest of them first), optionally filtered."""
    with open_wallet(ctx) as wallet:
        page = wallet.audit(limit=lines, **_filters(agent, tx_id, event, severity, since, until))
    _print_entries(list(reversed(page.entries)), json_)


@audit.command("filter")
@handle_errors
def audit_filter(
    ctx: typer.Context,
    agent: Agent = None,
    tx_id: TxId = None,
    event: Event = None,
    severity: Sev = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 1000,
    json_: Json = False,
) -> None:
    """Every entry matching the filters (newest first, up to --limit)."""
    if limit < 1:
        raise InvalidInputError("--limit must be at least 1", field="limit")
    found: list[Any] = []
    with open_wallet(ctx) as wallet:
        filters = _filters(agent, tx_id, event, severity, since, until)
        cursor: int | None = None
        while len(found) < limit:
            page = wallet.audit(limit=min(1000, limit - len(found)), cursor=cursor, **filters)
            found.extend(page.entries)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    _print_entries(found, json_)


_EXPORT_COLUMNS = [
    "id",
    "timestamp",
    "time",
    "severity",
    "event_type",
    "actor",
    "agent_id",
    "session_id",
    "tx_id",
    "ip_address",
    "details",
]


def _export(wallet: Any, filters: dict[str, Any], fh: TextIO, format_: str, bar: Progress) -> int:
    """Write every entry matching ``filters`` to ``fh``, page by page; returns how many."""
    written = 0
    columns = _EXPORT_COLUMNS
    # no total: counting every match first would read the filtered log twice
    task = bar.add_task("export", total=None)
    writer = csv.writer(fh) if format_ == "csv" else None
    if writer is not None:
        writer.writerow(columns)
    cursor: int | None = None
    while True:
        page = wallet.audit(limit=1000, cursor=cursor, **filters)
        for entry in page.entries:
            data = _entry_dict(entry)
            if writer is not None:
                row = dict(data, details=json.dumps(entry.details, sort_keys=True))
                writer.writerow([row.get(c) for c in columns])
            else:
                fh.write(json.dumps(data, sort_keys=True, default=str) + "\n")
            written += 1
        bar.update(task, completed=written)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return written


@audit.command("export")
@handle_errors
def audit_export(
    ctx: typer.Context,
    output: Annotated[Path, typer.Argument(help="The file to write (refused if it exists).")],
    format_: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    agent: Agent = None,
    tx_id: TxId = None,
    event: Event = None,
    severity: Sev = None,
    since: Since = None,
    until: Until = None,
    json_: Json = False,
) -> None:
    """Export matching entries, newest first, to JSONL or CSV (with a progress bar)."""
    if format_ not in ("jsonl", "csv"):
        raise InvalidInputError("--format must be jsonl or csv", field="format")
    if output.exists():
        raise fail(f"{output} already exists; choose another file")
    with open_wallet(ctx) as wallet:
        filters = _filters(agent, tx_id, event, severity, since, until)
        wallet.audit(limit=1, **filters)  # validates the filters before the file is created
        with (
            output.open("x", encoding="utf-8", newline="") as fh,
            Progress(
                TextColumn("exporting"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err(),
                transient=True,
            ) as bar,
        ):
            written = _export(wallet, filters, fh, format_, bar)
    if json_:
        emit_json({"path": str(output), "entries": written, "format": format_})
    else:
        out().print(f"wrote {written} entries to {output}")


# ---------------------------------------------------------------------------- backup


@handle_errors
def backup(
    ctx: typer.Context,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to write (default: beside the database).")
    ] = None,
    json_: Json = False,
) -> None:
    """A consistent copy of the database (VACUUM INTO). Back up the keystore directory too."""
    with open_wallet(ctx) as wallet:
        path = wallet.backup(directory)
        keystore = wallet.keystore_path
    if json_:
        emit_json({"path": str(path), "keystore": None if keystore is None else str(keystore)})
    else:
        out().print(f"backup written to {path}")
        if keystore is not None:
            out().print(
                f"also back up the keystore directory {keystore} (sealed keys)", style="dim"
            )
        else:
            out().print("the keystore is inside the database: this copy holds it", style="dim")


# ---------------------------------------------------------------------------- keystore


@keystore.command("migrate-to-database")
@handle_errors
def keystore_migrate(
    ctx: typer.Context,
    keystore_dir: Annotated[
        Path | None,
        typer.Option("--keystore-dir", help="The keystore directory (default <db>.keystore)."),
    ] = None,
    json_: Json = False,
) -> None:
    """Move the file keystore into the wallet database, in one transaction (stop every
    process using the wallet first). The directory is kept, renamed *.migrated-<time>."""
    from waiaas.db import parse_target
    from waiaas.errors import PasswordUnavailableError
    from waiaas.keystore import resolve_password
    from waiaas.keystore.migrate import move_to_database

    st = state(ctx)
    target: str | Path = st.db_url if st.db_url is not None else db_path(st)
    if isinstance(target, str) and keystore_dir is None:
        raise fail("a PostgreSQL wallet has no default keystore directory: pass --keystore-dir", 2)
    parsed = parse_target(target)
    where = str(parsed.path) if parsed.path is not None else parsed.location
    try:
        password = resolve_password(None, keyring_user=where)
    except PasswordUnavailableError:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise
        password = typer.prompt("Master password", hide_input=True, err=True)
    moved = move_to_database(target, password, keystore_dir=keystore_dir)
    del password
    if json_:
        emit_json(
            {
                "keystore_id": moved.keystore_id,
                "records": moved.records,
                "old_directory": str(moved.old_directory),
            }
        )
    else:
        out().print(f"moved {moved.records} keystore records into {where}")
        out().print(
            f"the old directory is kept at {moved.old_directory}: delete it once the wallet "
            "opens and a backup of the database is taken",
            style="dim",
        )


# ---------------------------------------------------------------------------- health

_OK, _WARN, _CRIT = 0, 1, 2


def report_location(target: Path | str) -> str:
    """A database for display: the path, or the PostgreSQL URL without its password."""
    if isinstance(target, Path):
        return str(target)
    from waiaas.db.engine import parse_target

    return parse_target(target).location


class _Reader:
    """A read-only DB-API connection for ``health``, on either dialect (``?`` statements)."""

    def __init__(self, target: Path | str) -> None:
        self.location: str
        self.server: dict[str, Any]
        if isinstance(target, Path):
            self.dialect = "sqlite"
            self.location = str(target)
            self._con: Any = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=10)
            self.server = {"dialect": "sqlite", "version": sqlite3.sqlite_version}
        else:
            import psycopg

            from waiaas.db.engine import parse_target, pg_connect_kwargs

            parsed = parse_target(target)
            assert parsed.url is not None
            self.dialect = "postgresql"
            self.location = parsed.location
            cargs, cparams = pg_connect_kwargs(parsed)
            cparams.setdefault("connect_timeout", 10)
            self._con = psycopg.connect(*cargs, **cparams, autocommit=True)
            self._con.execute("SET default_transaction_read_only = on")
            row = self._con.execute("SHOW server_version").fetchone()
            self.server = {
                "dialect": "postgresql",
                "version": row[0] if row else None,
                "location": self.location,
            }

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        from waiaas.db.engine import adapt_sql

        return list(self._con.execute(adapt_sql(sql, self.dialect), args).fetchall())

    def one(self, sql: str, *args: Any) -> Any:
        found = self.rows(sql, *args)
        return found[0][0] if found else None

    def close(self) -> None:
        self._con.close()


def _db_errors() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is only needed for PostgreSQL
        return (sqlite3.DatabaseError,)
    return (sqlite3.DatabaseError, psycopg.Error)


def _revision(con: _Reader) -> str | None:
    if con.dialect == "postgresql":
        if not con.one("SELECT to_regclass('alembic_version') IS NOT NULL"):
            return None
        return cast(str | None, con.one("SELECT version_num FROM alembic_version"))
    try:
        return cast(str | None, con.one("SELECT version_num FROM alembic_version"))
    except sqlite3.DatabaseError:
        return None


def _problem(problems: list[dict[str, Any]], level: int, text: str) -> None:
    problems.append({"level": ("ok", "warning", "critical")[level], "message": text})


def _state_value(con: _Reader, key: str) -> Any:
    raw = con.one("SELECT value FROM wallet_state WHERE key = ?", key)
    return json.loads(raw) if raw else None


def _health(path: Path | str, *, stuck_after: int, now: int) -> dict[str, Any]:
    from waiaas.db.database import LAST_CHECKPOINT_KEY
    from waiaas.db.migrate import head_revision
    from waiaas.pipeline.killswitch import KEY as KILL_KEY

    problems: list[dict[str, Any]] = []
    con = _Reader(path)
    try:
        head = head_revision()
        revision = _revision(con)
        schema = {"revision": revision, "head": head, "current": revision == head}
        if revision is None:
            _problem(problems, _CRIT, "not a waiaas database (no schema revision)")
            return {
                "status": "critical",
                "problems": problems,
                "schema": schema,
                "database": con.server,
            }
        if revision != head:
            _problem(problems, _WARN, f"schema at {revision}, this waiaas expects {head}")
        kill = _state_value(con, KILL_KEY) or {"active": False}
        if kill.get("active"):
            _problem(problems, _CRIT, f"kill switch is ON: {kill.get('reason')}")
        work = _work(con, stuck_after=stuck_after, now=now)
        _work_problems(work, stuck_after, problems)
        checkpoint = _state_value(con, LAST_CHECKPOINT_KEY)
        wal = None if con.dialect == "postgresql" else Path(f"{path}-wal")
        wal_bytes = wal.stat().st_size if wal is not None and wal.exists() else 0
        if wal_bytes > 256 * 1024 * 1024:
            _problem(
                problems,
                _WARN,
                f"the WAL file is {wal_bytes} bytes: checkpoints are not keeping up",
            )
        channels = _channels(con, problems)
    finally:
        con.close()
    level = max((("ok", "warning", "critical").index(p["level"]) for p in problems), default=0)
    return {
        "status": ("ok", "warning", "critical")[level],
        "checked_at": now,
        "database": con.server,
        "schema": schema,
        "kill_switch": kill,
        "work": work,
        "checkpoint": {
            "last": checkpoint,
            "last_iso": when(checkpoint["at"]) if checkpoint else None,
            "wal_bytes": wal_bytes,
        },
        "channels": channels,
        "problems": problems,
    }


def _work(con: _Reader, *, stuck_after: int, now: int) -> dict[str, Any]:
    """``health``'s "work": what waits, and what waits too long."""
    one = con.one
    queued = one("SELECT count(*) FROM transactions WHERE status = 'QUEUED'")
    overdue_delays = one(
        "SELECT count(*) FROM transactions WHERE status = 'QUEUED' AND tier = 'DELAY' "
        + (
            "AND CAST(CAST(metadata AS json) ->> 'execute_after' AS BIGINT) <= ?"
            if con.dialect == "postgresql"
            else "AND CAST(json_extract(metadata, '$.execute_after') AS INTEGER) <= ?"
        ),
        now - stuck_after,
    )
    pending_approvals = one(
        "SELECT count(*) FROM pending_approvals p JOIN transactions t ON t.id = p.tx_id "
        "WHERE t.status = 'QUEUED' AND p.approved_at IS NULL AND p.rejected_at IS NULL "
        "AND p.expires_at > ?",
        now,
    )
    unexpired = one(
        "SELECT count(*) FROM pending_approvals p JOIN transactions t ON t.id = p.tx_id "
        "WHERE t.status = 'QUEUED' AND p.approved_at IS NULL AND p.rejected_at IS NULL "
        "AND p.expires_at <= ?",
        now - stuck_after,
    )
    approved_waiting = one(
        "SELECT count(*) FROM pending_approvals p JOIN transactions t ON t.id = p.tx_id "
        "WHERE t.status = 'QUEUED' AND p.approved_at IS NOT NULL AND p.approved_at <= ?",
        now - stuck_after,
    )
    stuck = [
        {"tx_id": r[0], "status": r[1], "since": r[2]}
        for r in con.rows(
            "SELECT t.id, t.status, (SELECT max(timestamp) FROM audit_log a "
            "WHERE a.tx_id = t.id) AS since FROM transactions t "
            "WHERE t.status IN ('EXECUTING', 'SUBMITTED')"
        )
        if r[2] is None or r[2] <= now - stuck_after
    ]
    return {
        "queued": queued,
        "pending_approvals": pending_approvals,
        "overdue_delays": overdue_delays,
        "unprocessed_expired_approvals": unexpired,
        "approved_not_executed": approved_waiting,
        "stuck": stuck,
    }


def _work_problems(work: dict[str, Any], stuck_after: int, problems: list[dict[str, Any]]) -> None:
    """Due work that is not being processed, transactions stuck executing or submitted."""
    overdue_delays = work["overdue_delays"]
    unexpired = work["unprocessed_expired_approvals"]
    approved_waiting = work["approved_not_executed"]
    if overdue_delays or unexpired or approved_waiting:
        _problem(
            problems,
            _WARN,
            f"due work is not being processed ({overdue_delays} delays, {unexpired} "
            f"expired approvals, {approved_waiting} approved transactions waiting): "
            "is a wallet process running with background=True?",
        )
    if work["stuck"]:
        _problem(
            problems,
            _WARN,
            f"{len(work['stuck'])} transactions executing or submitted for over {stuck_after} s",
        )


def _channels(con: _Reader, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``health``'s notification channels; a channel whose last delivery failed, or none
    enabled, is a problem."""
    channels = []
    for cid, ctype, enabled, ok_at, fail_at in con.rows(
        "SELECT id, type, enabled, last_success_at, last_failure_at "
        "FROM notification_channels ORDER BY priority DESC, id"
    ):
        failing = bool(enabled) and fail_at is not None and (ok_at is None or fail_at > ok_at)
        channels.append(
            {
                "id": cid,
                "type": ctype,
                "enabled": bool(enabled),
                "last_success_at": ok_at,
                "last_failure_at": fail_at,
                "healthy": not failing,
            }
        )
        if failing:
            _problem(problems, _WARN, f"channel {cid} ({ctype}) failed its last delivery")
    if not any(c["enabled"] for c in channels):
        _problem(
            problems, _WARN, "no enabled notification channel: nobody hears about APPROVAL work"
        )
    return channels


@handle_errors
def health(
    ctx: typer.Context,
    stuck_after: Annotated[
        int, typer.Option(help="Seconds after which due or in-flight work counts as stuck.")
    ] = 300,
    json_: Json = False,
) -> None:
    """Is this wallet healthy? Exit 0 ok, 1 warning, 2 critical (Nagios-style).

    Reads the database only (no password needed): the database (SQLite, or PostgreSQL and the
    server's version), schema revision, kill switch, queued and stuck work, the last
    background checkpoint (SQLite), and each notification channel's last outcome.
    """
    st = state(ctx)
    path: Path | str = st.db_url if st.db_url is not None else db_path(st)
    try:
        report = _health(path, stuck_after=stuck_after, now=int(time.time()))
    except _db_errors() as exc:
        from waiaas.db.faults import translate

        where = report_location(path)
        raise fail(f"cannot read {where}: {translate(exc, operation='read').message}", 2) from None
    if json_:
        emit_json(report)
    else:
        console = out()
        console.print(f"[bold]{report['status'].upper()}[/bold] {report_location(path)}")
        database = report["database"]
        console.print(f"database: {database['dialect']} {database['version']}", markup=False)
        schema = report["schema"]
        console.print(f"schema: {schema['revision']} (expected {schema['head']})", markup=False)
        if "work" in report:
            ks = report["kill_switch"]
            console.print(f"kill switch: {'ON' if ks.get('active') else 'off'}")
            work = report["work"]
            console.print(
                f"work: {work['queued']} queued, {work['pending_approvals']} awaiting approval, "
                f"{len(work['stuck'])} stuck"
            )
            cp = report["checkpoint"]
            if database["dialect"] == "postgresql":
                console.print("checkpoints: managed by the PostgreSQL server")
            else:
                console.print(
                    f"last checkpoint: {cp['last_iso'] or 'never recorded'}; "
                    f"WAL {cp['wal_bytes']} bytes"
                )
            for ch in report["channels"]:
                console.print(
                    f"channel {ch['id']} ({ch['type']}): "
                    f"{'healthy' if ch['healthy'] else 'FAILING'}"
                    f"{'' if ch['enabled'] else ' (disabled)'}",
                    markup=False,
                )
        for p in report["problems"]:
            console.print(f"{p['level']}: {p['message']}", markup=False)
    raise typer.Exit(("ok", "warning", "critical").index(report["status"]))


# ---------------------------------------------------------------------------- serve


@handle_errors
def serve_approvals(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    public_url: Annotated[
        str | None,
        typer.Option(help="The URL owners open (behind a proxy); default http://HOST:PORT."),
    ] = None,
) -> None:
    """Serve the owner approval page (and run due work in the background).

    Links in notifications point here when the wallet processes are configured with the
    same approvals URL (WAIAAS_APPROVALS_URL / --approvals-url / WalletConfig.approvals_url).
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from waiaas.web import approvals_app

    if not 0 < port < 65536:
        raise InvalidInputError("--port must be 1-65535", field="port")
    st = state(ctx)
    url = public_url or st.approvals_url or f"http://{host}:{port}"
    st.approvals_url = url
    from urllib.parse import urlsplit

    mount = urlsplit(url).path.rstrip("/")
    with open_wallet(ctx, background=True) as wallet:
        app: Any = approvals_app(wallet)
        if mount:
            app = Starlette(routes=[Mount(mount, app=app)])
        err().print(f"serving owner approvals at {url} (listening on {host}:{port})")
        if not wallet.networks:
            err().print("no --rpc chain: approved transactions execute in the wallet process")
        uvicorn.run(app, host=host, port=port, log_level="warning", ws="none", lifespan="off")
