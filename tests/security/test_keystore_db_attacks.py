"""An attacker with write access to the database edits the keystore's rows.

Real SQLite files, and a real PostgreSQL schema under ``--backend=postgresql`` (the rows are
edited through a raw connection on either). The database backend keeps the same sealed
records as the files (``keystore_records``, migration 0010): every key AEAD-sealed and bound
to the keystore id, its key id, chain and public key; the header binds the KDF parameters.
So a thief who can write the table still cannot move a key onto another agent, relabel it,
downgrade the KDF or mix generations; a password change is one transaction, all or nothing,
also when the process dies in it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.rawdb import raw_connect, target_of
from waiaas.config import KdfLimits
from waiaas.db import Database
from waiaas.errors import (
    InvalidInputError,
    KeyIntegrityError,
    KeystoreError,
    WrongPasswordError,
)
from waiaas.keystore import Keystore, generate_keypair
from waiaas.keystore._dbstore import DatabaseBackend

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new master password"
SRC = str(Path(__file__).resolve().parents[2] / "src")


@contextmanager
def _opened(path: Path) -> Iterator[Database]:
    handle = Database.open(path)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "wallet.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    handle = Database.open(db_path)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def ks(db: Database) -> Keystore:
    """A database keystore with agent-a and agent-b (solana), a named secret, an archive."""
    store = Keystore.create(db, PASSWORD, kdf=KdfLimits.minimum())
    for key_id in ("agent-a", "agent-b"):
        store.add_key(key_id, "solana", *generate_keypair("solana"))
    store.rotate_key("agent-a", *generate_keypair("solana"))
    store.put_secret("jwt", b"s" * 32)
    return store


def rows(db_path: Path) -> dict[str, tuple[int, str]]:
    """``{name: (generation, body)}`` read by a raw connection (as an attacker would), on
    SQLite or, under ``--backend=postgresql``, on the schema the path goes to."""
    with raw_connect(db_path) as conn:
        found = conn.all("SELECT name, generation, body FROM keystore_records")
    return {name: (generation, body) for name, generation, body in found}


def attack(db_path: Path, sql: str, params: tuple[Any, ...]) -> None:
    with raw_connect(db_path) as conn:
        conn.execute(sql, params)


def edit(db_path: Path, name: str, change: Any) -> None:
    """Rewrite one row's JSON body with ``change(data)``."""
    data = json.loads(rows(db_path)[name][1])
    change(data)
    attack(
        db_path,
        "UPDATE keystore_records SET body = ? WHERE name = ?",
        (json.dumps(data), name),
    )


# --------------------------------------------------------------------------- sealed rows


@pytest.mark.parametrize("position", [0, 30, -1])
def test_flipped_bit_in_a_sealed_row(ks: Keystore, db_path: Path, position: int) -> None:
    """A flipped bit in the nonce, ciphertext or tag of a row: KeyIntegrityError, named."""

    def flip(data: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(data["sealed"]))
        raw[position] ^= 0x01
        data["sealed"] = base64.b64encode(bytes(raw)).decode()

    edit(db_path, "keys/agent-a", flip)
    with pytest.raises(KeyIntegrityError) as err, ks.use_key("agent-a"):
        pass
    assert err.value.key_id == "agent-a"


def test_two_agents_rows_swapped(ks: Keystore, db_path: Path) -> None:
    """Swapping the bodies of two agents' rows: neither key opens as the other agent."""
    both = rows(db_path)
    a, b = both["keys/agent-a"][1], both["keys/agent-b"][1]
    attack(db_path, "UPDATE keystore_records SET body = ? WHERE name = 'keys/agent-a'", (b,))
    attack(db_path, "UPDATE keystore_records SET body = ? WHERE name = 'keys/agent-b'", (a,))
    for key_id in ("agent-a", "agent-b"):
        with pytest.raises(KeyIntegrityError, match="another key id"), ks.use_key(key_id):
            pass


def test_swapped_and_relabelled(ks: Keystore, db_path: Path) -> None:
    """With the key_id inside the body rewritten too, the AEAD binding still refuses."""
    body = rows(db_path)["keys/agent-a"][1]
    attack(db_path, "UPDATE keystore_records SET body = ? WHERE name = 'keys/agent-b'", (body,))
    edit(db_path, "keys/agent-b", lambda d: d.update(key_id="agent-b"))
    with pytest.raises(KeyIntegrityError, match="failed authentication"), ks.use_key("agent-b"):
        pass


def test_address_swapped_for_the_attackers(ks: Keystore, db_path: Path) -> None:
    """A row edited to show the attacker's address (to redirect deposits) is refused."""
    _, attacker = generate_keypair("solana")
    edit(db_path, "keys/agent-a", lambda d: d.update(public_key=attacker))
    with pytest.raises(KeyIntegrityError):
        ks.public_key("agent-a")


def test_archived_key_and_secret_rows_are_bound(ks: Keystore, db_path: Path) -> None:
    """An archived key moved under another agent, or a secret renamed, is refused."""
    names = rows(db_path)
    archive = next(n for n in names if n.startswith("archive/agent-a/"))
    archive_id = archive.rsplit("/", 1)[1]
    body = names[archive][1]
    attack(
        db_path,
        "INSERT INTO keystore_records VALUES (?, 1, ?, 0)",
        (f"archive/agent-b/{archive_id}", body.replace('"agent-a"', '"agent-b"')),
    )
    with pytest.raises(KeyIntegrityError), ks.use_archived_key("agent-b", archive_id):
        pass
    attack(
        db_path,
        "INSERT INTO keystore_records VALUES ('secrets/other', 1, ?, 0)",
        (names["secrets/jwt"][1].replace('"jwt"', '"other"'),),
    )
    with pytest.raises(KeyIntegrityError):
        ks.get_secret("other")


def test_a_row_from_another_keystore(ks: Keystore, db_path: Path, tmp_path: Path) -> None:
    """A sealed row from another database keystore (same password, same key id) fails."""
    with _opened(tmp_path / "other.db") as other_db:
        other = Keystore.create(other_db, PASSWORD, kdf=KdfLimits.minimum())
        other.add_key("agent-a", "solana", *generate_keypair("solana"))
    body = rows(tmp_path / "other.db")["keys/agent-a"][1]
    attack(db_path, "UPDATE keystore_records SET body = ? WHERE name = 'keys/agent-a'", (body,))
    with pytest.raises(KeyIntegrityError), ks.use_key("agent-a"):
        pass


def test_kdf_downgrade_in_the_header_row(ks: Keystore, db_path: Path, db: Database) -> None:
    """Lowering the stored Argon2id cost (to speed up guessing) makes the header not open."""
    edit(db_path, "header", lambda d: d["kdf"].update(opslimit=d["kdf"]["opslimit"] + 1))
    with pytest.raises(WrongPasswordError):
        Keystore.open(db).unlock(PASSWORD)


def test_generation_column_edited(ks: Keystore, db_path: Path) -> None:
    """A row claiming another generation than the header's is refused, not believed."""
    attack(db_path, "UPDATE keystore_records SET generation = 7 WHERE name = 'keys/agent-b'", ())
    with pytest.raises(KeyIntegrityError, match="another generation"), ks.use_key("agent-b"):
        pass
    assert not ks.locked  # the header did not move: no password change is assumed


def test_a_foreign_row_blocks_a_password_change(ks: Keystore, db_path: Path) -> None:
    """A row the keystore does not know is never silently dropped by a password change."""
    before = rows(db_path)
    attack(db_path, "INSERT INTO keystore_records VALUES ('planted', 1, '{}', 0)", ())
    with pytest.raises(KeystoreError, match="planted"):
        ks.change_password(PASSWORD, NEW_PASSWORD)
    after = rows(db_path)
    del after["planted"]
    assert after == before


def test_no_secret_in_the_table(ks: Keystore, db_path: Path) -> None:
    """Neither the password nor any key or secret appears in the rows (all sealed)."""
    dump = json.dumps(rows(db_path))
    assert PASSWORD not in dump
    assert base64.b64encode(b"s" * 32).decode() not in dump
    with ks.use_key("agent-b") as secret:
        assert base64.b64encode(secret).decode() not in dump
        assert secret.hex() not in dump


# --------------------------------------------------------------------------- crashes


class Injected(Exception):
    """The failure injected between two row writes of a password change."""


def test_a_failure_between_any_two_row_writes_changes_nothing(
    ks: Keystore, db_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password change fails at every row write in turn: the table is as before, the old
    password opens everything, the new one nothing; then a change succeeds."""
    before = rows(db_path)
    total = len([n for n in before if n != "audit-head"])
    real = DatabaseBackend._put_row
    for fail_at in range(1, total + 1):
        seen = 0

        def failing(self: DatabaseBackend, conn: Any, *args: Any, fail_at: int = fail_at) -> None:
            nonlocal seen
            seen += 1
            if seen == fail_at:
                raise Injected(f"crash at row write {fail_at}")
            real(self, conn, *args)

        monkeypatch.setattr(DatabaseBackend, "_put_row", failing)
        with pytest.raises(Injected):
            ks.change_password(PASSWORD, NEW_PASSWORD)
        monkeypatch.setattr(DatabaseBackend, "_put_row", real)
        assert seen == fail_at
        assert rows(db_path) == before, f"changed after a failure at row {fail_at}"
        with ks.use_key("agent-b"):
            pass
    with pytest.raises(WrongPasswordError):
        Keystore.open(db).unlock(NEW_PASSWORD)
    ks.change_password(PASSWORD, NEW_PASSWORD)
    assert {g for n, (g, _) in rows(db_path).items() if n != "audit-head"} == {2}


CHILD = textwrap.dedent(
    """
    import sys, time
    from waiaas.db import Database
    from waiaas.keystore import Keystore
    from waiaas.keystore._dbstore import DatabaseBackend

    path, old, new, point = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    real = DatabaseBackend._put_row
    seen = 0

    def put(self, conn, *args):
        global seen
        real(self, conn, *args)
        seen += 1
        if seen == point:
            print("READY", flush=True)
            time.sleep(60)  # the parent kills us here, inside the transaction

    DatabaseBackend._put_row = put
    Keystore.open(Database.open(path)).change_password(old, new)
    print("FINISHED", flush=True)
    """
)


@pytest.mark.parametrize("point", [1, 3, 5])
def test_sigkill_in_the_middle_of_a_password_change(
    ks: Keystore, db_path: Path, db: Database, point: int
) -> None:
    """A process killed after writing some rows of the new generation: the old password is
    in force and everything opens with it; the database is fully usable afterwards."""
    before = rows(db_path)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, target_of(db), PASSWORD, NEW_PASSWORD, str(point)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line == "READY", f"child said {line!r}; stderr: {child.stderr.read()}"  # type: ignore[union-attr]
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert rows(db_path) == before
    with pytest.raises(WrongPasswordError):
        Keystore.open(db).unlock(NEW_PASSWORD)
    with ks.use_key("agent-a"), ks.use_key("agent-b"):
        pass
    ks.change_password(PASSWORD, NEW_PASSWORD)
    again = Keystore.open(db)
    again.unlock(NEW_PASSWORD)
    assert again.get_secret("jwt") == b"s" * 32


# --------------------------------------------------------------------------- transactions


def test_a_rotation_inside_a_write_commits_or_rolls_back_with_it(
    ks: Keystore, db: Database
) -> None:
    """Called inside a write unit of work, a rotation joins its transaction: rolled back
    with it (nothing rotated), committed with it (rotated)."""
    before = ks.public_key("agent-b")
    with db.write():
        rotation = ks.rotate_key("agent-b", *generate_keypair("solana"))
        assert ks.public_key("agent-b") == rotation.new_public_key  # read your writes
        # leaving without commit: rolled back
    assert ks.public_key("agent-b") == before and ks.archived_keys("agent-b") == []
    with db.write() as uow:
        rotation = ks.rotate_key("agent-b", *generate_keypair("solana"))
        uow.commit()
    assert ks.public_key("agent-b") == rotation.new_public_key
    assert [a.public_key for a in ks.archived_keys("agent-b")] == [before]


def test_a_failed_keystore_write_leaves_the_outer_transaction_usable(
    ks: Keystore, db: Database
) -> None:
    """A refused keystore write inside a unit of work rolls back to its savepoint only."""
    with db.write() as uow:
        uow.state.put("marker", {"x": 1}, now=1)
        with pytest.raises(InvalidInputError, match="already exists"):
            ks.add_key("agent-a", "solana", *generate_keypair("solana"))
        uow.commit()
    with db.read() as uow:
        assert uow.state.get("marker") == {"x": 1}
