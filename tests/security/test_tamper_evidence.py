"""A file-write attacker edits a closed wallet database, then the wallet is reopened.

Each forgery (delete, insert, edit, reorder audit rows; cut the tail; lose the WAL after a
crash; edit a policy, the owner address, a stored request) is detected and named: ``open``
refuses with TamperDetectedError for what was written since the last signed checkpoint,
``verify_audit`` names the first broken link anywhere, also in a backup (read-only)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SOL, EvmOwner, new_agent, recipient
from tests.support.rawdb import raw_connect
from waiaas.db.chain import GENESIS_BYTES, row_digest
from waiaas.errors import DatabaseOpenError, InvalidInputError, TamperDetectedError, WaiaasError
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import TEST_PASSWORD, FrozenClock, fast_config, local_chains
from waiaas.types import AuditCheckpoint, AuditEvent, Transfer
from waiaas.wallet import Wallet


def _open(path: Path, **config: Any) -> Wallet:
    return Wallet.open(
        path,
        password=TEST_PASSWORD,
        chains=local_chains(),
        config=fast_config(**config),
        clock=FrozenClock(),
        notifier=RecordingNotifier(),
    )


def _pg_sql(sql: str) -> str:
    """The attacker's statement in PostgreSQL's words: ``json_set(col, '$.a.b', ?)`` (the
    JSON columns are TEXT on both) and an untyped ``? IS NULL``."""

    def json_set(match: re.Match[str]) -> str:
        col, path = match.group(1), match.group(2)
        keys = ",".join(k for k in re.split(r"[.\[\]]+", path.removeprefix("$")) if k)
        return f"jsonb_set({col}::jsonb, '{{{keys}}}', to_jsonb(?::text))::text"

    sql = re.sub(r"json_set\((\w+), '([^']+)', \?\)", json_set, sql)
    return sql.replace("? IS NULL", "?::text IS NULL")


def _attack(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Run SQL on the closed database as an attacker with write access would: lift the
    audit log's triggers, edit, restore them (on PostgreSQL: the table owner's
    ``DISABLE TRIGGER``; on SQLite: drop and re-create them)."""
    with raw_connect(path, autocommit=False) as conn:
        if conn.dialect == "postgresql":
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            for sql, params in statements:
                conn.execute(_pg_sql(sql), params)
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
        else:
            triggers = conn.all(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'audit_log'"
            )
            for name, _ in triggers:
                conn.execute(f"DROP TRIGGER {name}")
            for sql, params in statements:
                conn.execute(sql, params)
            for _, sql in triggers:
                conn.execute(sql)
        conn.commit()


def _rows(path: Path) -> list[tuple[Any, ...]]:
    with raw_connect(path) as conn:
        return conn.all(
            "SELECT id, event_type, details, prev_hash, row_hash, mac FROM audit_log ORDER BY id"
        )


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A closed wallet whose log holds transfers and a POLICY_VIOLATION."""
    path = tmp_path / "wallet.db"
    w = _open(path)
    try:
        agent = new_agent(w, "solana", funds=10 * SOL)
        token = w.issue_session(agent.id).token
        w.add_policy("ALLOWED_ADDRESSES", {"addresses": [recipient("solana")]}, agent_id=agent.id)
        for _ in range(2):
            with pytest.raises(Exception):  # noqa: B017 - the denial itself is not under test
                w.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
    finally:
        w.close()
    return path


def _violation_id(path: Path) -> int:
    return next(r[0] for r in _rows(path) if r[1] == AuditEvent.POLICY_VIOLATION)


def _refused(path: Path) -> TamperDetectedError:
    with pytest.raises(TamperDetectedError) as caught:
        _open(path)
    assert caught.value.entity == "audit_log"
    return caught.value


def _reported(path: Path) -> tuple[Any, list[Any]]:
    """Open in report mode: the wallet writes a critical TAMPER_DETECTED row and notifies."""
    w = _open(path, on_tamper="report")
    try:
        report = w.verify_audit()
        rows = w.audit(event_types=[AuditEvent.TAMPER_DETECTED]).entries
        notified = [e for e in w._pipeline.notifier.target.events]  # type: ignore[union-attr]
        assert rows and rows[0].severity == "critical"
        assert any(e.event_type == AuditEvent.TAMPER_DETECTED for e in notified)
        return report, list(rows)
    finally:
        w.close()


def test_an_untouched_wallet_verifies_and_reopens(history: Path) -> None:
    """The baseline: nothing changed, open succeeds and every row verifies."""
    with _open(history) as w:
        report = w.verify_audit()
        rows = len(_rows(history))
    assert report.ok and report.rows_checked == rows
    assert report.problem is None and report.first_broken_id is None


def test_deleting_an_audit_row_is_detected_and_named(history: Path) -> None:
    """Deleting the POLICY_VIOLATION row breaks the link of the row after it: 'deleted'."""
    victim = _violation_id(history)
    _attack(history, ("DELETE FROM audit_log WHERE id = ?", (victim,)))
    error = _refused(history)
    assert error.problem == "deleted"
    report, rows = _reported(history)
    assert not report.ok and report.problem == "deleted"
    assert report.first_broken_id == victim + 1
    assert rows[0].details["problem"] == "deleted"


def test_inserting_an_audit_row_is_detected_and_named(history: Path) -> None:
    """A row chained correctly by hash but without the key's MAC is a forgery."""
    rows = _rows(history)
    last = rows[-1]
    values = (1, "TX_CONFIRMED", "system", None, None, None, "{}", "info", None)
    forged_hash = row_digest(last[4], values)
    _attack(
        history,
        (
            "INSERT INTO audit_log (timestamp, event_type, actor, agent_id, session_id, tx_id,"
            " details, severity, ip_address, prev_hash, row_hash, mac)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, last[4], forged_hash, hashlib.sha256(b"guess").digest()),
        ),
    )
    assert _refused(history).problem == "forged"
    report, _ = _reported(history)
    assert report.problem == "forged" and report.first_broken_id == last[0] + 1


def test_editing_an_audit_row_is_detected_and_named(history: Path) -> None:
    """Rewriting a recipient in a TX_REQUESTED row: 'altered'; with its hash redone: 'forged'."""
    target = next(r for r in _rows(history) if r[1] == AuditEvent.TX_REQUESTED)
    edited = target[2].replace('"to":"', '"to":"X')
    assert edited != target[2]
    _attack(history, ("UPDATE audit_log SET details = ? WHERE id = ?", (edited, target[0])))
    assert _refused(history).problem == "altered"
    report, _ = _reported(history)
    assert report.problem == "altered" and report.first_broken_id == target[0]


def test_editing_an_audit_row_and_its_hash_is_a_forgery(history: Path) -> None:
    """Recomputing the row hash (SHA-256 needs no key) does not produce the MAC."""
    cols = (
        "timestamp, event_type, actor, agent_id, session_id, tx_id, details, severity, ip_address"
    )
    with raw_connect(history) as conn:
        target = conn.one(
            f"SELECT id, {cols} FROM audit_log WHERE event_type = 'TX_REQUESTED' ORDER BY id"
        )
        assert target is not None
        before = conn.one("SELECT row_hash FROM audit_log WHERE id = ?", (target[0] - 1,))
    assert before is not None
    values = list(target[1:])
    values[6] = values[6].replace('"to":"', '"to":"X')
    _attack(
        history,
        (
            "UPDATE audit_log SET details = ?, row_hash = ? WHERE id = ?",
            (values[6], row_digest(before[0], values), target[0]),
        ),
    )
    assert _refused(history).problem == "forged"


def _edited(value: bytes, edit: str) -> Any:
    return {
        "flipped": bytes([value[0] ^ 1]) + value[1:],
        "truncated": value[:31],
        "extended": value + b"\0",
        "as hex text": value.hex(),  # the form before 0013, written by a thief
    }[edit]


@pytest.mark.parametrize("edit", ["flipped", "truncated", "extended", "as hex text"])
@pytest.mark.parametrize(("column", "problem"), [("row_hash", "altered"), ("mac", "forged")])
def test_editing_a_stored_digest_is_detected(
    history: Path, column: str, problem: str, edit: str
) -> None:
    """The 32 bytes of a row's hash or MAC changed in place (a bit flipped, cut, extended,
    or the same digest written back as hex text): named at that row."""
    rows = _rows(history)
    target = rows[len(rows) // 2]
    value = target[4] if column == "row_hash" else target[5]
    assert isinstance(value, bytes) and len(value) == 32
    _attack(
        history,
        (f"UPDATE audit_log SET {column} = ? WHERE id = ?", (_edited(value, edit), target[0])),
    )
    assert _refused(history).problem == problem
    report, _ = _reported(history)
    assert report.problem == problem and report.first_broken_id == target[0]


def test_reordering_audit_rows_is_detected_and_named(history: Path) -> None:
    """Swapping two rows' positions (ids): the chain names the row that is out of order."""
    rows = _rows(history)
    a, b = rows[-3][0], rows[-2][0]
    _attack(
        history,
        ("UPDATE audit_log SET id = -1 WHERE id = ?", (a,)),
        ("UPDATE audit_log SET id = ? WHERE id = ?", (a, b)),
        ("UPDATE audit_log SET id = ? WHERE id = -1", (b,)),
    )
    assert _refused(history).problem == "reordered"
    report, _ = _reported(history)
    assert report.problem == "reordered" and report.first_broken_id == a


def test_cutting_the_tail_of_the_log_is_detected(history: Path) -> None:
    """Deleting the newest rows leaves a valid chain, but the keystore recorded a later head."""
    last = _rows(history)[-1][0]
    _attack(history, ("DELETE FROM audit_log WHERE id >= ?", (last - 1,)))
    assert _refused(history).problem == "truncated"
    report, rows = _reported(history)
    # Reported once and re-anchored: the log as found verifies from now on, and the
    # critical row keeps what was lost.
    assert report.ok
    assert rows[0].details["problem"] == "truncated"
    assert str(last) in rows[0].details["message"]


_CRASH = """
import os, sys
from waiaas.testing import TEST_PASSWORD, fast_config, local_chains
from waiaas.wallet import Wallet
w = Wallet.open(sys.argv[1], password=TEST_PASSWORD, chains=local_chains(), config=fast_config())
w.create_agent("late", "solana")
w.suspend_agent(w.list_agents()[-1].id, reason="late change")
os._exit(0)   # a crash: no close, no checkpoint; the last commits are only in the -wal file
"""


@pytest.mark.sqlite_only
def test_losing_the_wal_after_a_crash_is_detected(history: Path) -> None:
    """Commits that lived only in the -wal file vanish with it; the next open says so."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    subprocess.run([sys.executable, "-c", _CRASH, str(history)], check=True, env=env)
    wal = Path(f"{history}-wal")
    assert wal.exists() and wal.stat().st_size > 0
    wal.unlink()
    Path(f"{history}-shm").unlink(missing_ok=True)
    error = _refused(history)
    assert error.problem == "truncated"
    assert "write-ahead log" in error.message


@pytest.mark.sqlite_only  # a backup file (PostgreSQL: pg_dump)
def test_a_checkpoint_kept_elsewhere_proves_old_rows(history: Path, tmp_path: Path) -> None:
    """An exported checkpoint verifies with the public key alone, and catches a rewrite of
    rows older than the last checkpoint (which open does not re-walk)."""
    with _open(history) as w:
        cp = w.export_audit_checkpoint()
        backup = w.backup(tmp_path)
    saved = AuditCheckpoint.model_validate_json(cp.model_dump_json())
    assert saved.verify(cp.public_key)
    assert not saved.model_copy(update={"seq": saved.seq - 1}).verify(cp.public_key)
    first = _rows(history)[0]
    _attack(history, ("DELETE FROM audit_log WHERE id = ?", (first[0],)))
    _attack(backup, ("DELETE FROM audit_log WHERE id = ?", (first[0],)))
    before = backup.read_bytes()
    with _open(history) as w:  # the change is older than the last checkpoint: open passes
        report = w.verify_audit(checkpoint=saved)
        from_backup = w.verify_audit(backup)
    assert report.problem == "deleted" and report.first_broken_id == first[0] + 1
    assert from_backup.problem == "deleted" and from_backup.source == str(backup)
    assert backup.read_bytes() == before  # read-only


@pytest.mark.sqlite_only  # a backup file (PostgreSQL: pg_dump)
def test_an_untouched_backup_verifies(history: Path, tmp_path: Path) -> None:
    """A backup verifies on its own, against the checkpoint exported when it was taken."""
    with _open(history) as w:
        backup = w.backup(tmp_path)
        cp = w.export_audit_checkpoint()
        report = w.verify_audit(backup)
        assert report.ok, report.message
        assert w.verify_audit(checkpoint=cp).ok


def test_a_forged_checkpoint_is_named(history: Path) -> None:
    """A checkpoint row not signed by the wallet's key is reported as such."""
    with _open(history) as w:
        w.export_audit_checkpoint()
    _attack(history, ("UPDATE audit_checkpoints SET head_hash = ?", ("00" * 32,)))
    with _open(history, on_tamper="report") as w:
        report = w.verify_audit()
    assert report.problem == "checkpoint"


# --------------------------------------------------------------------------- rows with MACs


def _tamper_rows(w: Wallet) -> list[Any]:
    return list(w.audit(event_types=[AuditEvent.TAMPER_DETECTED]).entries)


def _notified(w: Wallet) -> list[Any]:
    target = w._pipeline.notifier.target  # type: ignore[union-attr]
    return [e for e in target.events if e.event_type == AuditEvent.TAMPER_DETECTED]


@pytest.fixture
def guarded(tmp_path: Path) -> tuple[Path, str, str, str]:
    """A closed wallet: an agent whose only allowed recipient is ``friend``; a session token."""
    path = tmp_path / "wallet.db"
    friend = recipient("solana")
    with _open(path) as w:
        agent = new_agent(w, "solana", funds=10 * SOL)
        policy = w.add_policy("ALLOWED_ADDRESSES", {"addresses": [friend]}, agent_id=agent.id)
        token = w.issue_session(agent.id, ttl=86_400).token
        assert w.send(token, Transfer(to=friend, amount=SOL // 100)).status == "CONFIRMED"
    return path, token, friend, policy.id


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("UPDATE policies SET rules = json_set(rules, '$.addresses[0]', ?) WHERE id = ?", "policy"),
        ("DELETE FROM policies WHERE id = ? OR ? IS NULL", "policy"),
        ("UPDATE policies SET enabled = 0 WHERE id = ? OR ? IS NULL", "policy"),
    ],
    ids=["edited", "deleted", "disabled"],
)
def test_a_policy_changed_in_the_file_refuses_the_next_request(
    guarded: tuple[Path, str, str, str], statement: str, named: str
) -> None:
    """Edit, delete or disable a policy in the file: the next request is refused with
    TamperDetectedError naming the policy, a critical row is written and the owner notified."""
    path, token, _friend, policy_id = guarded
    thief = recipient("solana")
    params: tuple[Any, ...] = (thief, policy_id) if "json_set" in statement else (policy_id, None)
    _attack(path, (statement, params))
    with _open(path) as w:
        with pytest.raises(TamperDetectedError) as caught:
            w.send(token, Transfer(to=thief, amount=SOL // 100))
        assert caught.value.entity == named
        rows = _tamper_rows(w)
        assert rows and rows[0].severity == "critical"
        assert rows[0].details["entity"] == "policy"
        assert _notified(w)
        assert w.list_transactions().__len__() == 1  # nothing new was admitted


@pytest.fixture
def approval_pending(tmp_path: Path) -> tuple[Path, EvmOwner, str]:
    """A closed wallet with one APPROVAL transaction waiting for its owner."""
    path = tmp_path / "wallet.db"
    owner = EvmOwner()
    with _open(path) as w:
        agent = new_agent(w, "solana", owner=owner, funds=50 * SOL)
        token = w.issue_session(agent.id).token
        result = w.send(token, Transfer(to=recipient("solana"), amount=11 * SOL))
        assert result.status == "QUEUED" and result.tier == "APPROVAL"
    return path, owner, result.id


def test_an_owner_address_changed_in_the_file_cannot_approve(
    approval_pending: tuple[Path, EvmOwner, str],
) -> None:
    """The attacker writes their own address as owner and signs: refused, tx FAILED, named."""
    path, _owner, tx_id = approval_pending
    attacker = EvmOwner()
    _attack(path, ("UPDATE agents SET owner_address = ?", (attacker.address,)))
    with _open(path) as w:
        message = w.approval_message(tx_id)
        with pytest.raises(TamperDetectedError) as caught:
            w.approve(tx_id, attacker.sign(message))
        assert caught.value.entity == "agent"
        tx = w.get_transaction(tx_id)
        assert tx.status == "FAILED" and "TAMPER_DETECTED" in (tx.error or "")
        rows = _tamper_rows(w)
        assert rows[0].tx_id == tx_id and rows[0].details["entity"] == "agent"
        assert _notified(w)


def test_a_stored_request_redirected_in_the_file_is_refused_before_signing(
    approval_pending: tuple[Path, EvmOwner, str],
) -> None:
    """Rewriting the recipient the signer would use (metadata.request): the owner's approval
    is refused before anything is signed, and the transaction FAILS with TAMPER_DETECTED."""
    path, owner, tx_id = approval_pending
    thief = recipient("solana")
    _attack(
        path,
        (
            "UPDATE transactions SET metadata = json_set(metadata, '$.request.to', ?) WHERE id = ?",
            (thief, tx_id),
        ),
    )
    with _open(path) as w:
        with pytest.raises(TamperDetectedError) as caught:
            w.approve(tx_id, owner.sign(w.approval_message(tx_id)))
        assert caught.value.entity == "transaction"
        tx = w.get_transaction(tx_id)
        assert tx.status == "FAILED" and tx.tx_hash is None
        assert _tamper_rows(w)[0].details["entity"] == "transaction"


def test_a_queued_delay_edited_in_the_file_is_refused_by_process_due(tmp_path: Path) -> None:
    """A DELAY transaction whose amount is raised in the file never executes."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    w = Wallet.open(
        path,
        password=TEST_PASSWORD,
        chains=local_chains(),
        config=fast_config(),
        clock=clock,
        notifier=RecordingNotifier(),
    )
    with w:
        agent = new_agent(w, "solana", funds=50 * SOL)
        token = w.issue_session(agent.id).token
        queued = w.send(token, Transfer(to=recipient("solana"), amount=2 * SOL))
        assert queued.tier == "DELAY"
    _attack(
        path,
        (
            "UPDATE transactions SET amount = ?,"
            " metadata = json_set(metadata, '$.request.amount', ?) WHERE id = ?",
            (str(9 * SOL), str(9 * SOL), queued.id),
        ),
    )
    clock.advance(10_000)
    w = Wallet.open(
        path,
        password=TEST_PASSWORD,
        chains=local_chains(),
        config=fast_config(),
        clock=clock,
        notifier=RecordingNotifier(),
    )
    with w:
        w.process_due()
        tx = w.get_transaction(queued.id)
        assert tx.status == "FAILED" and tx.tx_hash is None
        assert _tamper_rows(w)[0].tx_id == queued.id


# ------------------------------------------------------------- rows that store no prev_hash
#
# New rows leave ``prev_hash`` NULL (it would repeat the previous row's ``row_hash``); rows
# written before store it. ``fmt`` gives the log in both forms, and mixed: "new" (as written
# now), "old" (every row stores its link, as the previous code wrote them) and "mixed" (the
# older half stores it). Each attack is named the same way in every form.

_COLS = "timestamp, event_type, actor, agent_id, session_id, tx_id, details, severity, ip_address"


def _links(path: Path) -> list[tuple[int, bytes | None, bytes]]:
    """``(id, prev_hash, row_hash)`` of every row, in order."""
    with raw_connect(path) as conn:
        return conn.all("SELECT id, prev_hash, row_hash FROM audit_log ORDER BY id")


def _store_links(path: Path, upto: int | None = None) -> None:
    """Write each row's link into ``prev_hash`` (rows up to ``upto``): the old form."""
    links = _links(path)
    before = [GENESIS_BYTES, *(h for _, _, h in links)]
    _attack(
        path,
        *(
            ("UPDATE audit_log SET prev_hash = ? WHERE id = ?", (before[i], rid))
            for i, (rid, _, _) in enumerate(links)
            if upto is None or rid <= upto
        ),
    )


@pytest.fixture(params=["new", "old", "mixed"])
def chained(history: Path, request: pytest.FixtureRequest) -> Path:
    """``history`` with its rows in the form ``request.param`` names."""
    links = _links(history)
    assert links and all(prev is None for _, prev, _ in links)  # as written now
    if request.param == "old":
        _store_links(history)
    elif request.param == "mixed":
        _store_links(history, upto=links[len(links) // 2][0])
    with _open(history) as w:
        assert w.verify_audit().ok
    return history


def test_new_rows_store_no_prev_hash_and_still_chain(history: Path) -> None:
    """Every row the wallet writes leaves prev_hash NULL; its hash covers the previous row's
    row_hash (the first row's: the genesis hash) and the log verifies."""
    with raw_connect(history) as conn:
        rows = conn.all(f"SELECT {_COLS}, prev_hash, row_hash FROM audit_log ORDER BY id")
    prev = GENESIS_BYTES
    for row in rows:
        assert row[9] is None
        assert row[10] == row_digest(prev, list(row[:9]))
        prev = row[10]
    with _open(history) as w:
        report = w.verify_audit()
    assert report.ok and report.rows_checked >= len(rows)  # opening adds its own rows


def test_deleting_a_middle_row_is_named_in_every_form(chained: Path) -> None:
    victim = _violation_id(chained)
    _attack(chained, ("DELETE FROM audit_log WHERE id = ?", (victim,)))
    assert _refused(chained).problem == "deleted"
    report, _ = _reported(chained)
    assert report.problem == "deleted" and report.first_broken_id == victim + 1


def test_editing_details_is_named_in_every_form(chained: Path) -> None:
    target = next(r for r in _rows(chained) if r[1] == AuditEvent.TX_REQUESTED)
    edited = target[2].replace('"to":"', '"to":"X')
    _attack(chained, ("UPDATE audit_log SET details = ? WHERE id = ?", (edited, target[0])))
    assert _refused(chained).problem == "altered"
    report, _ = _reported(chained)
    assert report.problem == "altered" and report.first_broken_id == target[0]


def _resync_ids(path: Path) -> None:
    """After rows were given ids by hand: PostgreSQL's identity sequence continues after the
    largest (as an attacker leaves it so that the wallet's next rows can be written)."""
    with raw_connect(path, autocommit=False) as conn:
        if conn.dialect == "postgresql":
            conn.execute(
                "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), max(id)) FROM audit_log"
            )
            conn.commit()


def _make_room(path: Path, at: int) -> None:
    """Move every row from id ``at`` on one id up (the attacker's room for a new row)."""
    _attack(
        path,
        ("UPDATE audit_log SET id = -id WHERE id >= ?", (at,)),
        ("UPDATE audit_log SET id = 1 - id WHERE id < 0", ()),
    )


@pytest.mark.parametrize("mac", ["guessed", "none", "copied"])
def test_a_row_forged_into_the_middle_is_named_in_every_form(chained: Path, mac: str) -> None:
    """A row inserted between two others, hash-chained correctly after the row before it
    (prev_hash NULL, as the wallet writes now), with a guessed MAC, none, or another row's:
    'forged' at that row."""
    links = _links(chained)
    k, _, k_hash = links[len(links) // 2]
    values = (1, "TX_CONFIRMED", "system", None, None, None, "{}", "info", None)
    forged = row_digest(k_hash, values)
    mac_value = {
        "guessed": hashlib.sha256(b"guess").digest(),
        "none": None,
        "copied": _rows(chained)[-1][5],
    }[mac]
    _make_room(chained, k + 1)
    _attack(
        chained,
        (
            f"INSERT INTO audit_log (id, {_COLS}, prev_hash, row_hash, mac)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (k + 1, *values, None, forged, mac_value),
        ),
    )
    _resync_ids(chained)
    assert _refused(chained).problem == "forged"
    report, _ = _reported(chained)
    assert report.problem == "forged" and report.first_broken_id == k + 1


def test_a_copy_of_a_real_row_replayed_into_the_middle_is_named(chained: Path) -> None:
    """A genuine row (its content, hash and MAC) copied into another place: it does not
    chain after the row before it, and follows the row it was copied after: 'reordered'."""
    links = _links(chained)
    k = links[len(links) // 2][0]
    source = links[2][0]
    with raw_connect(chained) as conn:
        copy = conn.one(
            f"SELECT {_COLS}, prev_hash, row_hash, mac FROM audit_log WHERE id = ?", (source,)
        )
    assert copy is not None
    _make_room(chained, k + 1)
    _attack(
        chained,
        (
            f"INSERT INTO audit_log (id, {_COLS}, prev_hash, row_hash, mac)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (k + 1, *copy),
        ),
    )
    _resync_ids(chained)
    assert _refused(chained).problem == "reordered"
    report, _ = _reported(chained)
    assert report.problem == "reordered" and report.first_broken_id == k + 1
    assert f"follows row {source - 1}" in str(report.message)


def test_swapping_two_rows_is_named_in_every_form(chained: Path) -> None:
    rows = _rows(chained)
    a, b = rows[-3][0], rows[-2][0]
    _attack(
        chained,
        ("UPDATE audit_log SET id = -1 WHERE id = ?", (a,)),
        ("UPDATE audit_log SET id = ? WHERE id = ?", (a, b)),
        ("UPDATE audit_log SET id = ? WHERE id = -1", (b,)),
    )
    assert _refused(chained).problem == "reordered"
    report, _ = _reported(chained)
    assert report.problem == "reordered" and report.first_broken_id == a


def test_nulling_stored_links_changes_nothing_the_chain_proves(history: Path) -> None:
    """Old rows whose prev_hash the attacker sets NULL still verify (the link was redundant:
    the chain reads the previous row's hash), and hide nothing: a row deleted, edited or
    swapped among them is still named."""
    _store_links(history)
    _attack(history, ("UPDATE audit_log SET prev_hash = NULL", ()))
    with _open(history) as w:
        assert w.verify_audit().ok
    victim = _violation_id(history)
    target = next(r for r in _rows(history) if r[1] == AuditEvent.TX_REQUESTED)
    edited = target[2].replace('"to":"', '"to":"X')
    _attack(
        history,
        ("DELETE FROM audit_log WHERE id = ?", (victim,)),
        ("UPDATE audit_log SET details = ? WHERE id = ?", (edited, target[0])),
    )
    report, _ = _reported(history)
    first = min(victim + 1, target[0])
    assert not report.ok and report.first_broken_id == first
    assert report.problem == ("deleted" if first == victim + 1 else "altered")


@pytest.mark.parametrize("link", ["random", "another row's", "genesis"])
def test_a_stored_link_that_disagrees_is_named(history: Path, link: str) -> None:
    """An old row whose stored prev_hash is not the previous row's row_hash breaks the chain
    at that row, whatever the stored value."""
    _store_links(history)
    links = _links(history)
    rid = links[len(links) // 2][0]
    value = {
        "random": hashlib.sha256(b"x").digest(),
        "another row's": links[1][2],
        "genesis": GENESIS_BYTES,
    }[link]
    _attack(history, ("UPDATE audit_log SET prev_hash = ? WHERE id = ?", (value, rid)))
    assert _refused(history).problem in {"altered", "reordered", "deleted"}
    report, _ = _reported(history)
    assert not report.ok and report.first_broken_id == rid


def test_a_link_written_into_a_new_row_must_be_the_right_one(history: Path) -> None:
    """A new row (prev_hash NULL) given a stored link by the attacker: the right one changes
    nothing; any other is named at that row."""
    links = _links(history)
    rid, _, _ = links[len(links) // 2]
    right = next(h for i, _, h in links if i == rid - 1)
    _attack(history, ("UPDATE audit_log SET prev_hash = ? WHERE id = ?", (right, rid)))
    with _open(history) as w:
        assert w.verify_audit().ok
    _attack(history, ("UPDATE audit_log SET prev_hash = ? WHERE id = ?", (links[0][2], rid)))
    report, _ = _reported(history)
    assert not report.ok and report.first_broken_id == rid


@pytest.mark.parametrize("rid", [-5, -1000])
def test_a_row_forged_below_the_first_id_is_walked_and_named(history: Path, rid: int) -> None:
    """Ids start at 1; a row inserted by hand with a negative id is still walked (first) and
    carries no MAC of the wallet's key: 'forged' at that row."""
    values = (1, "TX_CONFIRMED", "system", None, None, None, "{}", "info", None)
    _attack(
        history,
        (
            f"INSERT INTO audit_log (id, {_COLS}, prev_hash, row_hash, mac)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, *values, None, row_digest(GENESIS_BYTES, values), hashlib.sha256(b"g").digest()),
        ),
    )
    report, _ = _reported(history)
    assert report.problem == "forged" and report.first_broken_id == rid


@pytest.mark.sqlite_only  # a backup file (PostgreSQL: pg_dump)
@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("x" * 300, InvalidInputError),  # longer than NAME_MAX: stat raises ENAMETOOLONG
        ("a\x00b", DatabaseOpenError),
        ("missing.db", DatabaseOpenError),
        ("~no-such-user-waiaas/backup.db", InvalidInputError),
    ],
)
def test_a_bad_backup_path_is_a_clear_error(
    history: Path, tmp_path: Path, name: str, error: type[Exception]
) -> None:
    """verify_audit(path) names a path it cannot read with a waiaas error, never an OSError."""
    path = name if name.startswith("~") else str(tmp_path / name)
    with _open(history) as w:
        with pytest.raises(error) as caught:
            w.verify_audit(path)
        assert isinstance(caught.value, WaiaasError)
        assert w.verify_audit().ok  # nothing else was touched
