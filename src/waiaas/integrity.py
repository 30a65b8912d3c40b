"""Tamper evidence: the audit chain's keys, MACs over security-relevant rows, signed checkpoints.

Internal module (the public surface is :meth:`Wallet.verify_audit`,
:meth:`Wallet.export_audit_checkpoint`, :class:`~waiaas.types.AuditCheckpoint`,
:class:`~waiaas.types.AuditReport` and :class:`~waiaas.errors.TamperDetectedError`).

Keys live in the keystore, never in the database:

- ``audit-mac-key`` (32 random bytes, a named secret): HMAC-SHA256 key of every audit row,
  the owner binding of each agent, each policy, each stored request and approval.
- ``audit-signing-key`` (an ed25519 seed): signs checkpoints ``(sequence, head hash)``, so a
  copy kept elsewhere proves what the log held, verifiable with the public key alone.
- ``audit-anchor``: the last audit row that existed when the wallet first sealed its database
  (rows up to it were chained by migration 0007 but carry no MAC).
- ``audit-head`` (a small file in the keystore directory, two MAC'd slots): the newest chain
  head this machine committed. A database whose WAL vanished, or whose tail was cut, no longer
  contains that head, and the next open says so. With the keystore in the database
  (``keystore_backend="database"``) the head is a MAC'd row ``audit-head`` of
  ``keystore_records``, written in the same transaction as the audit rows it names: it still
  catches a cut or rewritten tail and a forged head, but not a rollback of the whole
  database (a lost WAL, a restored backup), which takes the head back with it; exported
  signed checkpoints (``Wallet.export_audit_checkpoint``) kept elsewhere cover that
  (docs/design.md, threat model).

A file-write attacker without the keystore can still delete the database (or any table
that the checks below do not cover), but cannot change, add, remove or reorder audit rows,
owner bindings, policies or stored requests without the next check naming it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from waiaas.db import portable
from waiaas.db.chain import (
    AUDIT_COLUMNS,
    GENESIS,
    GENESIS_BYTES,
    audit_mac,
    audit_mac_bytes,
    row_digest,
)
from waiaas.db.portable import RawConnection
from waiaas.db.tables import AuditCheckpointRow
from waiaas.pipeline.txmeta import (
    FINAL_SEAL,
    TxMeta,
    effects_of,
    final_decision,
    network_fee_of,
    request_of,
)
from waiaas.types import TxStatus

__all__ = [
    "Integrity",
    "checkpoint_message",
    "verify_checkpoint_signature",
    "walk_chain",
]

# names of keystore secrets, not secrets
SECRET_MAC = "audit-mac-key"  # noqa: S105
SECRET_SIGN = "audit-signing-key"  # noqa: S105
SECRET_ANCHOR = "audit-anchor"  # noqa: S105
HEAD_FILE = "audit-head"

_SLOT = 128
_HEAD_FMT = ">QQ32s32s"  # sequence number, audit row id, row hash, MAC
_HEAD_LEN = struct.calcsize(_HEAD_FMT)


def checkpoint_message(wallet_id: str, seq: int, head_hash: str, created_at: int) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return f"waiaas-audit-checkpoint/v1\n{wallet_id}\n{seq}\n{head_hash}\n{created_at}".encode()


def verify_checkpoint_signature(
    wallet_id: str, seq: int, head_hash: str, created_at: int, public_key: str, signature: str
) -> bool:
    """Whether ``signature`` (hex) is ``public_key``'s (hex) ed25519 signature of the checkpoint."""
    try:
        VerifyKey(bytes.fromhex(public_key)).verify(
            checkpoint_message(wallet_id, seq, head_hash, created_at), bytes.fromhex(signature)
        )
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def _canon(*parts: object) -> bytes:
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False, default=str).encode()


@dataclass(frozen=True)
class Break:
    """The first broken link of a chain walk."""

    row_id: int
    kind: str
    message: str


@dataclass(frozen=True)
class Walk:
    """What :func:`walk_chain` saw."""

    rows: int
    last_id: int
    last_hash: str
    broken: Break | None


_SELECT = (
    f"SELECT id, {', '.join(AUDIT_COLUMNS)}, prev_hash, row_hash, mac FROM audit_log "
    "WHERE id > ? ORDER BY id"
)


_BEFORE_ALL = -(2**63)  # below every id SQLite and PostgreSQL's BIGINT can hold


def walk_chain(
    conn: RawConnection,
    mac_key: bytes | None,
    *,
    after_id: int = 0,
    after_hash: str = GENESIS,
    unkeyed_upto: int = 0,
) -> Walk:
    """Walk ``audit_log`` rows after ``after_id`` and stop at the first broken link.

    ``after_hash`` is the row hash the first walked row must link to. Rows with an id up to
    ``unkeyed_upto`` may lack a MAC (chained by the migration before the wallet was sealed).
    With ``mac_key`` None, MACs are not checked (the hash chain still is).

    Each row's hash is recomputed from the previous walked row's stored ``row_hash``. A row
    that stores ``prev_hash`` (written before it was left NULL) must also name exactly that
    hash; one that stores NULL is linked by the recomputation alone, so a deleted, inserted,
    edited or moved row still breaks the hash of the row where it happened.
    """
    prev_id, prev = after_id, bytes.fromhex(after_hash)
    rows = 0
    # From the start, every row is walked: also one given an id of 0 or below by hand.
    cur = portable.stream(conn, _SELECT, (after_id if after_id > 0 else _BEFORE_ALL,))
    try:
        while True:
            batch = cur.fetchmany(4096)
            if not batch:
                break
            for r in batch:
                broken = _check_row(conn, r, mac_key, prev_id, prev, unkeyed_upto)
                if broken is not None:
                    return Walk(rows, prev_id, prev.hex(), broken)
                prev_id, prev = r[0], _stored(r[11])
                rows += 1
    finally:
        cur.close()
    return Walk(rows, prev_id, prev.hex(), None)


def _stored(value: Any) -> bytes:
    """A stored digest column as bytes: what waiaas writes is 32 bytes; anything else a
    thief put there (text, a number) as the bytes of its text, which match no digest."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return str(value).encode("utf-8")


def _check_row(
    conn: RawConnection,
    r: Any,
    mac_key: bytes | None,
    prev_id: int,
    prev: bytes,
    unkeyed_upto: int,
) -> Break | None:
    """The break at walked row ``r`` (``_SELECT``'s columns), which must follow ``prev_id``
    (whose row hash is ``prev``), or ``None``."""
    rid = r[0]
    if r[11] is None:
        return Break(rid, "forged", _msg_unchained(rid))
    stored_hash = _stored(r[11])
    stored_prev = None if r[10] is None else _stored(r[10])
    mac = None if r[12] is None else _stored(r[12])
    values = r[1:10]
    if row_digest(stored_prev if stored_prev is not None else prev, values) != stored_hash:
        if stored_prev is None:
            return _unlinked_break(conn, rid, prev_id, values, stored_hash)
        return Break(rid, "altered", _msg_altered(rid))
    if mac_key is not None:
        if mac is None:
            if rid > unkeyed_upto:
                return Break(rid, "forged", _msg_nomac(rid))
        elif not hmac.compare_digest(mac, audit_mac_bytes(mac_key, stored_hash)):
            return Break(
                rid,
                "forged",
                f"audit row {rid} was inserted or rewritten without the wallet's key: its MAC "
                "does not verify",
            )
    if stored_prev is not None and stored_prev != prev:
        return _link_break(conn, rid, prev_id, stored_prev)
    return None


def _msg_altered(rid: int) -> str:
    return f"audit row {rid} was altered: its content does not match its hash"


# How far (in ids, each side) a row that does not chain to the row before it is looked for a
# predecessor among the rows it may have been moved away from.
_REORDER_WINDOW = 4096


def _unlinked_break(
    conn: RawConnection, rid: int, prev_id: int, values: Any, stored_hash: bytes
) -> Break:
    """Name the break of a row storing no ``prev_hash`` whose hash does not follow row
    ``prev_id``: it follows another row nearby (reordered); otherwise rows before it are
    gone (an id gap: deleted), or its content changed (altered). Without the stored link
    the last two look alike; the id gap tells them apart where ids have none otherwise
    (SQLite), and the message names both."""
    near = conn.execute(
        "SELECT id, row_hash FROM audit_log WHERE id BETWEEN ? AND ? AND id <> ? ORDER BY id",
        (rid - _REORDER_WINDOW, rid + _REORDER_WINDOW, rid),
    ).fetchall()
    for other_id, other_hash in [(0, GENESIS_BYTES), *near]:
        if (
            other_hash
            and other_id != prev_id
            and row_digest(_stored(other_hash), values) == stored_hash
        ):
            after = f"row {other_id}" if other_id else "the start of the log"
            return Break(
                rid,
                "reordered",
                f"audit row {rid} is out of order: it follows {after}, not row {prev_id}",
            )
    if rid > prev_id + 1:
        return Break(
            rid,
            "deleted",
            f"audit rows were deleted before row {rid} (after row {prev_id}), or row {rid} was "
            "altered: the chain link is broken",
        )
    return Break(
        rid,
        "altered",
        f"audit row {rid} was altered (or rows before it were deleted): its content does not "
        "match its hash",
    )


def _msg_unchained(rid: int) -> str:
    return f"audit row {rid} was inserted outside waiaas: it carries no chain hash"


def _msg_nomac(rid: int) -> str:
    return f"audit row {rid} was inserted or rewritten outside waiaas: it carries no MAC"


def _link_break(conn: RawConnection, rid: int, prev_id: int, stored_prev: bytes) -> Break:
    """Name a broken link: the row this one follows exists elsewhere (reordered) or not."""
    found = conn.execute(
        "SELECT id FROM audit_log WHERE row_hash = ? LIMIT 1", (stored_prev,)
    ).fetchone()
    if found is not None:
        return Break(
            rid,
            "reordered",
            f"audit row {rid} is out of order: it follows row {found[0]}, not row {prev_id}",
        )
    return Break(
        rid,
        "deleted",
        f"audit rows were deleted before row {rid} (after row {prev_id}): the chain link is broken",
    )


class Integrity:
    """The wallet's integrity keys and the operations on them. Thread-safe.

    Built by :meth:`load` from an unlocked keystore. ``wallet_id`` is the keystore id.
    """

    def __init__(
        self,
        *,
        mac_key: bytes,
        signing_seed: bytes,
        wallet_id: str,
        anchor: tuple[int, str] | None,
        head_path: Path | None,
        checkpoint_rows: int = 1_000,
        clock: Any = None,
        head_db: Any = None,
    ) -> None:
        self._mac_key = mac_key
        self._signer = SigningKey(signing_seed)
        self.public_key = self._signer.verify_key.encode().hex()
        self.wallet_id = wallet_id
        self.anchor = anchor
        self.head_path = head_path
        self.head_db = head_db  # the Database whose keystore_records row holds the head
        self.checkpoint_rows = checkpoint_rows
        self._lock = threading.Lock()
        # head-file slots record_head found good or wrote, by their bytes (_read_slots)
        self._head_seen: dict[bytes, tuple[int, int, str]] = {}
        self.last_checkpoint_seq = 0
        self.clock = clock
        # usage bucket MACs already verified in this process -> the values they cover
        self._buckets: dict[str, tuple[str, tuple[Any, ...]]] = {}
        # transaction MACs tx_mac made in this process -> what of the row they cover
        self._tx_sealed: dict[str, tuple[Any, ...]] = {}

    def __repr__(self) -> str:
        return f"Integrity(wallet_id={self.wallet_id!r}, public_key={self.public_key!r})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("Integrity holds keys and cannot be pickled")

    # ------------------------------------------------------------------ keys

    @staticmethod
    def keys_from(keystore: Any) -> tuple[bytes, bytes] | None:
        """The (MAC key, signing seed) in ``keystore``, or None before the first sealing."""
        if not (keystore.has_secret(SECRET_MAC) and keystore.has_secret(SECRET_SIGN)):
            return None
        return keystore.get_secret(SECRET_MAC), keystore.get_secret(SECRET_SIGN)

    @staticmethod
    def create_keys(keystore: Any) -> tuple[bytes, bytes]:
        mac_key, seed = os.urandom(32), os.urandom(32)
        keystore.put_secret(SECRET_MAC, mac_key)
        keystore.put_secret(SECRET_SIGN, seed)
        return mac_key, seed

    @staticmethod
    def anchor_from(keystore: Any) -> tuple[int, str] | None:
        if not keystore.has_secret(SECRET_ANCHOR):
            return None
        data = json.loads(keystore.get_secret(SECRET_ANCHOR))
        return int(data["id"]), str(data["hash"])

    @staticmethod
    def store_anchor(keystore: Any, anchor: tuple[int, str]) -> None:
        keystore.put_secret(
            SECRET_ANCHOR, json.dumps({"id": anchor[0], "hash": anchor[1]}).encode()
        )

    # ------------------------------------------------------------------ MACs

    @property
    def unkeyed_upto(self) -> int:
        return self.anchor[0] if self.anchor is not None else 0

    def audit_mac(self, row_hash_hex: str) -> str:
        return audit_mac(self._mac_key, row_hash_hex)

    def audit_mac_bytes(self, digest: bytes) -> bytes:
        """The MAC an audit row stores (32 bytes) for its row digest."""
        return audit_mac_bytes(self._mac_key, digest)

    def mac(self, domain: str, *parts: object) -> str:
        """HMAC-SHA256 (hex) of ``parts`` in ``domain`` (``owner``, ``policy``, ``tx``...)."""
        return hmac.new(self._mac_key, _canon(domain, *parts), hashlib.sha256).hexdigest()

    def check(self, stored: str | None, domain: str, *parts: object) -> bool:
        return stored is not None and hmac.compare_digest(stored, self.mac(domain, *parts))

    def bucket_ok(self, stored: str | None, agent_id: str, values: tuple[Any, ...]) -> bool:
        """Whether ``stored`` is the MAC of an agent's usage bucket row holding ``values``
        (see :mod:`waiaas.db.usage`); verified MACs are remembered with their values."""
        if stored is None:
            return False
        if self._buckets.get(stored) == (agent_id, values):
            return True
        if not self.check(stored, "usage-bucket", agent_id, *values):
            return False
        if len(self._buckets) >= 100_000:
            self._buckets.clear()
        self._buckets[stored] = (agent_id, values)
        return True

    def owner_mac(self, agent_id: str, owner: str | None) -> str:
        return self.mac("owner", agent_id, owner)

    def owner_ok(self, agent_id: str, owner: str | None, stored: str | None) -> bool:
        return self.check(stored, "owner", agent_id, owner)

    def policy_mac(self, row: Any) -> str:
        return self.mac(
            "policy", row.id, row.agent_id, row.type, row.rules, int(row.priority), int(row.enabled)
        )

    def policy_ok(self, row: Any) -> bool:
        return row.mac is not None and hmac.compare_digest(row.mac, self.policy_mac(row))

    def policy_set_mac(self, scope: str, rows: Iterable[Any]) -> str:
        """MAC over the ids of the enabled policies of one scope (an agent id, or ``*``)."""
        return self.mac("policy-set", scope, sorted(r.id for r in rows if int(r.enabled)))

    def walk(self, conn: RawConnection, *, after_id: int = 0, after_hash: str = GENESIS) -> Walk:
        return walk_chain(
            conn,
            self._mac_key,
            after_id=after_id,
            after_hash=after_hash,
            unkeyed_upto=self.unkeyed_upto,
        )

    # ------------------------------------------------------------------ checkpoints

    def sign_checkpoint(self, seq: int, head_hash: str, created_at: int) -> str:
        msg = checkpoint_message(self.wallet_id, seq, head_hash, created_at)
        return bytes(self._signer.sign(msg).signature).hex()

    def checkpoint_ok(self, seq: int, head_hash: str, created_at: int, signature: str) -> bool:
        return verify_checkpoint_signature(
            self.wallet_id, seq, head_hash, created_at, self.public_key, signature
        )

    def maybe_checkpoint(self, uow: Any, head: tuple[int, str]) -> None:
        """Called by a committing unit of work: checkpoint every ``checkpoint_rows`` rows."""
        if head[0] - self.last_checkpoint_seq >= self.checkpoint_rows:
            self.write_checkpoint(uow, head)

    def write_checkpoint(self, uow: Any, head: tuple[int, str]) -> AuditCheckpointRow:
        """Insert a signed checkpoint of ``head`` in ``uow`` (the caller commits)."""
        now = int(self.clock.now()) if self.clock is not None else int(time.time())
        row = AuditCheckpointRow(
            seq=head[0],
            head_hash=head[1],
            created_at=now,
            wallet_id=self.wallet_id,
            public_key=self.public_key,
            signature=self.sign_checkpoint(head[0], head[1], now),
        )
        uow.session.add(row)
        uow.session.flush()
        self.last_checkpoint_seq = max(self.last_checkpoint_seq, head[0])
        return row

    # ------------------------------------------------------------------ head record

    def _head_mac(self, counter: int, rid: int, digest: bytes) -> bytes:
        return hmac.new(
            self._mac_key,
            b"audit-head\x00" + struct.pack(">QQ", counter, rid) + digest,
            hashlib.sha256,
        ).digest()

    @contextlib.contextmanager
    def _head_file(self) -> Iterator[int]:
        assert self.head_path is not None
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.head_path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    def _read_slots(
        self, fd: int, seen: dict[bytes, tuple[int, int, str]] | None = None
    ) -> tuple[int, int, str] | None:
        """The newest slot of the head file whose MAC is good: (counter, row id, digest hex).

        ``seen``: slots' bytes already found good (or written) with this key, and what they
        hold; a slot holding exactly those bytes needs no MAC computed again. Bytes found
        good here are added to it.
        """
        best: tuple[int, int, str] | None = None
        for slot in (0, 1):
            raw = os.pread(fd, _HEAD_LEN, slot * _SLOT)
            if len(raw) != _HEAD_LEN:
                continue
            found = seen.get(raw) if seen is not None else None
            if found is None:
                counter, rid, digest, mac = struct.unpack(_HEAD_FMT, raw)
                if not hmac.compare_digest(mac, self._head_mac(counter, rid, digest)):
                    continue
                found = (counter, rid, digest.hex())
                if seen is not None:
                    _remember_slot(seen, raw, found)
            if best is None or found[0] > best[0]:
                best = found
        return best

    def _db_head_mac(self, rid: int, digest_hex: str) -> str:
        return self.mac("audit-head-row", rid, digest_hex)

    def stage_head(self, uow: Any, rid: int, digest_hex: str) -> None:
        """Database keystore: record ``(rid, digest)`` in ``uow``'s own transaction (so the
        row never names an uncommitted audit row, and never lags one). No-op for files."""
        if self.head_db is None:
            return
        _put_head_row(uow.session.connection(), rid, digest_hex, self._db_head_mac(rid, digest_hex))

    def _read_head_row(self) -> tuple[int, str] | None:
        from waiaas.keystore._dbstore import AUDIT_HEAD

        db = self.head_db
        outer = db.current_write()
        sql = "SELECT body FROM keystore_records WHERE name = ?"
        if outer is not None:
            row = outer.fetch_one(sql, (AUDIT_HEAD,))
        else:
            row = db.fetch_one(sql, (AUDIT_HEAD,))
        if row is None:
            return None
        try:
            data = json.loads(row[0])
            rid, digest = int(data["id"]), str(data["hash"])
            mac = str(data["mac"])
        except (ValueError, KeyError, TypeError):
            return (0, "")
        if not hmac.compare_digest(mac, self._db_head_mac(rid, digest)):
            # A forged or edited head row: name it as a head that is not in the log.
            return (max(rid, 1), "forged head record")
        return rid, digest

    def read_head(self) -> tuple[int, str] | None:
        """The newest recorded chain head ``(row id, row hash)``, or None if none is recorded."""
        if self.head_db is not None:
            return self._read_head_row()
        if self.head_path is None or not self.head_path.exists():
            return None
        with self._lock, self._head_file() as fd:
            best = self._read_slots(fd)
        return None if best is None else (best[1], best[2])

    def record_head(self, rid: int, digest_hex: str) -> None:
        """Record ``(rid, digest)`` as the chain head unless a newer one is recorded already."""
        if self.head_path is None:
            return
        with self._lock, self._head_file() as fd:
            best = self._read_slots(fd, self._head_seen)
            if best is not None and best[1] > rid:
                return  # another writer recorded a newer head after this commit
            counter = (best[0] + 1) if best is not None else 1
            digest = bytes.fromhex(digest_hex)
            record = struct.pack(
                _HEAD_FMT, counter, rid, digest, self._head_mac(counter, rid, digest)
            )
            os.pwrite(fd, record.ljust(_SLOT, b"\0"), (counter % 2) * _SLOT)
            _remember_slot(self._head_seen, record, (counter, rid, digest.hex()))

    def reset_head(self, rid: int, digest_hex: str) -> None:
        """Record ``(rid, digest)`` even if an older-looking head is newer (after a report)."""
        if self.head_db is not None:
            with self.head_db.write() as uow:
                self.stage_head(uow, rid, digest_hex)
                uow.commit()
            return
        if self.head_path is None:
            return
        with self._lock, self._head_file() as fd:
            best = self._read_slots(fd)
            counter = (best[0] + 1) if best is not None else 1
            digest = bytes.fromhex(digest_hex)
            record = struct.pack(
                _HEAD_FMT, counter, rid, digest, self._head_mac(counter, rid, digest)
            )
            os.pwrite(fd, record.ljust(_SLOT, b"\0"), (counter % 2) * _SLOT)
            os.pwrite(fd, record.ljust(_SLOT, b"\0"), ((counter + 1) % 2) * _SLOT)


def _remember_slot(
    seen: dict[bytes, tuple[int, int, str]], raw: bytes, found: tuple[int, int, str]
) -> None:
    """Keep ``raw`` (a head-file slot's bytes, MAC good) and what it holds; the newest few."""
    if len(seen) >= 4:
        seen.clear()
    seen[raw] = found


def _put_head_row(conn: Any, rid: int, digest_hex: str, mac: str) -> None:
    """Write the ``audit-head`` row of ``keystore_records`` on ``conn`` (update, else insert)."""
    from sqlalchemy import insert, update

    from waiaas.db.tables import KeystoreRecordRow
    from waiaas.keystore._dbstore import AUDIT_HEAD

    table = KeystoreRecordRow.__table__  # type: ignore[attr-defined]
    body = json.dumps(
        {"format": 1, "kind": "audit_head", "id": rid, "hash": digest_hex, "mac": mac},
        sort_keys=True,
    )
    now = int(time.time())
    done = conn.execute(
        update(table)
        .where(table.c.name == AUDIT_HEAD)
        .values(generation=0, body=body, updated_at=now)
    )
    if done.rowcount == 0:
        conn.execute(insert(table).values(name=AUDIT_HEAD, generation=0, body=body, updated_at=now))


def request_digest(meta: TxMeta, row: Any) -> str:
    """SHA-256 of the request of transaction ``row`` whose metadata is ``meta`` (canonical
    JSON): the request whole, as the pipeline reads, judges and signs it, also where the
    row stores only what its columns do not hold (:func:`waiaas.pipeline.txmeta.request_of`).
    """
    return hashlib.sha256(_canon(request_of(meta, row))).hexdigest()


# =========================================================================== wallet level


def _raw(uow: Any) -> RawConnection:
    return portable.raw(uow)


def seal(db: Any, keystore: Any, *, clock: Any, checkpoint_rows: int) -> Integrity:
    """Load the wallet's integrity keys (creating them on first use) and attach them to ``db``.

    The first time (no anchor in the keystore yet) the database is sealed: every owner
    binding, policy, in-flight request and pending approval gets its MAC, and the current
    audit head becomes the anchor (rows up to it carry no MAC; migration 0007 chained them).
    The anchor is stored last, so a crash in between redoes the sealing on the next open.
    """
    in_db = getattr(keystore, "backend", "file") == "database"
    head_path = None if in_db else Path(keystore.path) / HEAD_FILE
    keys_created = False
    with db.write() as uow:  # serialises first-time key creation between processes
        keys = Integrity.keys_from(keystore)
        if keys is None:
            sealed = uow.session.connection().exec_driver_sql(
                "SELECT id FROM audit_log WHERE mac IS NOT NULL LIMIT 1"
            )
            if sealed.first() is not None:
                from waiaas.errors import TamperDetectedError

                raise TamperDetectedError(
                    "the database was sealed by a keystore holding integrity keys that this "
                    f"keystore ({keystore.location}) does not have: it cannot be verified; use the "
                    "keystore it was created with",
                    entity="keystore",
                    problem="missing_key",
                )
            keys = Integrity.create_keys(keystore)
            keys_created = True
        anchor = Integrity.anchor_from(keystore)
        integ = Integrity(
            mac_key=keys[0],
            signing_seed=keys[1],
            wallet_id=keystore.keystore_id,
            anchor=anchor,
            head_path=head_path,
            checkpoint_rows=checkpoint_rows,
            clock=clock,
            head_db=db if in_db else None,
        )
        if anchor is None:
            head = uow.audit.head()
            reseal_rows(uow, integ)
            uow.commit()
            Integrity.store_anchor(keystore, head)
            integ.anchor = head
            integ.reset_head(*head)
        elif uow.writable and keys_created:
            uow.commit()  # keys made now (database keystore: in this transaction) must stay
    db.integrity = integ
    return integ


def reseal_rows(uow: Any, integ: Integrity) -> None:
    """Give every security-relevant row its MAC over its current content (first sealing)."""
    from waiaas.db.tables import AgentRow, ApprovalRow, PolicyRow

    for agent in uow.session.exec(_select(AgentRow)):
        uow.agents.update_fields(agent.id, owner_mac=integ.owner_mac(agent.id, agent.owner_address))
    scopes = {p.agent_id for p in uow.session.exec(_select(PolicyRow))}
    scopes |= {a.id for a in uow.session.exec(_select(AgentRow))}
    now = int(integ.clock.now()) if integ.clock is not None else int(time.time())
    for scope in sorted(scopes, key=lambda s: s or ""):
        seal_policy_scope(integ, uow, scope, now)
    seal_policy_scope(integ, uow, None, now)
    for row in uow.transactions.with_status(("PENDING", "QUEUED", "EXECUTING", "SUBMITTED")):
        uow.transactions.update_fields(row.id, integrity=tx_mac(integ, row))
    for appr in list(uow.session.exec(_select(ApprovalRow))):
        uow.approvals.set_mac(appr.id, approval_mac(integ, appr))
    _seal_auto_stop_marks(uow, integ, now)


def _seal_auto_stop_marks(uow: Any, integ: Integrity, now: int) -> None:
    from waiaas.db.tables import WalletStateRow

    prefix = "auto-stop-mark:"
    for state in list(uow.session.exec(_select(WalletStateRow))):
        if not state.key.startswith(prefix):
            continue
        mark = uow.state.get(state.key)
        if not isinstance(mark, dict) or "mac" in mark:
            continue
        agent_id = state.key[len(prefix) :]
        tx_mark, audit_mark = int(mark.get("tx", 0)), int(mark.get("audit", 0))
        value = {
            "tx": tx_mark,
            "audit": audit_mark,
            "mac": auto_stop_mark_mac(integ, agent_id, tx_mark, audit_mark),
        }
        uow.state.put(state.key, value, now=now)


def _select(table: Any) -> Any:
    from sqlmodel import select

    return select(table)


# The version of a transaction's MAC is its prefix: "v2:" covers the stored plan too; a MAC
# without a prefix (v1) was written before that, and is still accepted for such rows. Only
# the wallet's key can write either, so a v1 MAC never exists for a row sealed as v2.
# "vf:" seals a row that moved into a final status (CONFIRMED, FAILED, CANCELLED, EXPIRED):
# what v2 covers plus that status, so a final row whose status is edited back (to run it
# again) or to another final status no longer verifies. A final row keeps its plan digest and
# effects but not the plan's instruction list (waiaas.pipeline.records.compact_final).
# "vc:" (rows that moved into a final status since) is "vf:" plus what a final row settles:
# its decision, its network fee quote and the fee paid, each read whole (such a row leaves
# out a compact decision that is only its tier, and stores an exact quote that is the fee
# paid as ``{}``: waiaas.pipeline.txmeta.final_decision, network_fee_of), so neither an edited value
# nor a different one put back where the row left a default out verifies. Its MAC is
# written in unpadded base64url. Rows sealed "vf:" before still verify as they were sealed.
TX_MAC_V2 = "v2:"
TX_MAC_FINAL = FINAL_SEAL
TX_MAC_FINAL_V1 = "vf:"
FINAL_STATUSES = frozenset(s.value for s in TxStatus if s.is_terminal)


def _doc_digest(value: Any) -> str | None:
    return None if value is None else hashlib.sha256(_canon(value)).hexdigest()


def _tx_fields(row: Any, meta: TxMeta) -> tuple[Any, ...]:
    return (
        row.id,
        row.agent_id,
        row.chain,
        row.type,
        row.amount,
        row.to_address,
        row.tier,
        meta.get("network"),
        request_digest(meta, row),
        meta.get("execute_after"),
        (meta.get("approval") or {}).get("owner"),
    )


def _plan_fields(row: Any, meta: TxMeta) -> tuple[Any, ...]:
    approval = meta.get("approval") or {}
    return (
        meta.get("plan_digest"),
        _doc_digest(meta.get("plan")),
        _doc_digest(effects_of(meta, row)),  # whole, as judged and shown
        approval.get("plan_digest"),
    )


def _status(row: Any) -> str:
    return str(getattr(row.status, "value", row.status))


def _meta_of(row: Any) -> TxMeta:
    meta: TxMeta = json.loads(row.metadata_json) if row.metadata_json else {}
    return meta


def _tx_mac_v2(integ: Integrity, row: Any, meta: TxMeta) -> str:
    return TX_MAC_V2 + integ.mac("tx/v2", *_tx_fields(row, meta), *_plan_fields(row, meta))


def _tx_mac_final_v1(integ: Integrity, row: Any, meta: TxMeta) -> str:
    return TX_MAC_FINAL_V1 + integ.mac(
        "tx/final", *_tx_fields(row, meta), _status(row), *_plan_fields(row, meta)
    )


def _settled_fields(row: Any, meta: TxMeta) -> tuple[Any, ...]:
    return (
        _doc_digest(final_decision(meta, row.tier)),
        _doc_digest(network_fee_of(meta)),
        meta.get("fee"),
    )


def _tx_mac_final(integ: Integrity, row: Any, meta: TxMeta) -> str:
    digest = integ.mac(
        "tx/final/v2",
        *_tx_fields(row, meta),
        _status(row),
        *_plan_fields(row, meta),
        *_settled_fields(row, meta),
    )
    # the 32 bytes in unpadded base64url (43 characters, not 64)
    return TX_MAC_FINAL + base64.urlsafe_b64encode(bytes.fromhex(digest)).decode()[:-1]


def tx_mac(integ: Integrity, row: Any) -> str:
    """MAC over what a transaction row decides: who, what, to whom, how much, which tier,
    and the plan that will be signed (the stored plan, its digest, its effects, and the digest
    the owner approved), so none of them can be edited in the file unseen. A row in a final
    status is sealed with that status, its decision and its fees too (``vc:``)."""
    view = _tx_view(row)
    meta = _meta_of(row)
    if _status(row) in FINAL_STATUSES:
        mac = _tx_mac_final(integ, row, meta)
    else:
        mac = _tx_mac_v2(integ, row, meta)
    _remember(integ, mac, view)
    return mac


def _tx_view(row: Any) -> tuple[Any, ...]:
    """Every column of ``row`` a transaction MAC covers, each with its type (so ``1``,
    ``True`` and ``"1"``, which canonicalise differently, never compare equal)."""
    values = (
        row.id,
        row.agent_id,
        row.chain,
        row.type,
        row.amount,
        row.to_address,
        row.tier,
        row.status,
        row.metadata_json,
    )
    return tuple((type(v), v) for v in values)


def _tx_mac_v1(integ: Integrity, row: Any) -> str:
    meta = _meta_of(row)
    return integ.mac("tx", *_tx_fields(row, meta))


def tx_ok(integ: Integrity, row: Any) -> bool:
    """Whether the row's stored MAC verifies (a final ``vc:`` MAC, a final ``vf:`` one
    written before, v2, or a v1 MAC written before plans were covered)."""
    stored = row.integrity
    if not isinstance(stored, str):
        return False
    view = _tx_view(row)
    if integ._tx_sealed.get(stored) == view:
        return True  # this very MAC was made or verified for these very values in this process
    if stored.startswith(TX_MAC_FINAL):
        ok = hmac.compare_digest(stored, _tx_mac_final(integ, row, _meta_of(row)))
    elif stored.startswith(TX_MAC_FINAL_V1):
        ok = hmac.compare_digest(stored, _tx_mac_final_v1(integ, row, _meta_of(row)))
    elif stored.startswith(TX_MAC_V2):
        ok = hmac.compare_digest(stored, _tx_mac_v2(integ, row, _meta_of(row)))
    else:
        return hmac.compare_digest(stored, _tx_mac_v1(integ, row))
    if ok:  # the next check of the same values (an audit page read again) is a look-up
        _remember(integ, stored, view)
    return ok


def _remember(integ: Integrity, mac: str, view: tuple[Any, ...]) -> None:
    """Keep ``mac`` as made or verified for exactly ``view`` (at most 1,024 at once)."""
    if len(integ._tx_sealed) >= 1024:
        integ._tx_sealed.clear()
    integ._tx_sealed[mac] = view


def approval_mac(integ: Integrity, row: Any) -> str:
    """MAC over an approval and the owner's decision on it (``v2:``): a file-write attacker
    who sets ``approved_at`` to approve in the owner's place is refused before signing."""
    return TX_MAC_V2 + integ.mac(
        "approval/v2",
        row.id,
        row.tx_id,
        int(row.expires_at),
        int(row.created_at),
        None if row.approved_at is None else int(row.approved_at),
        None if row.rejected_at is None else int(row.rejected_at),
        row.owner_signature,
    )


def approval_ok(integ: Integrity, row: Any) -> bool:
    """Whether the approval's MAC verifies: v2, or a v1 MAC (written before the decision was
    covered) on an approval nobody has decided."""
    stored = row.mac
    if not isinstance(stored, str):
        return False
    if stored.startswith(TX_MAC_V2):
        return hmac.compare_digest(stored, approval_mac(integ, row))
    undecided = row.approved_at is None and row.rejected_at is None and not row.owner_signature
    v1 = integ.mac("approval", row.id, row.tx_id, int(row.expires_at), int(row.created_at))
    return undecided and hmac.compare_digest(stored, v1)


def _checkpoints(conn: RawConnection) -> list[tuple[int, str, int, str, str, str]]:
    rows: list[tuple[int, str, int, str, str, str]] = conn.execute(
        "SELECT seq, head_hash, created_at, wallet_id, public_key, signature "
        "FROM audit_checkpoints ORDER BY seq DESC, id DESC"
    ).fetchall()
    return rows


def _row_hash_at(conn: RawConnection, rid: int) -> str | None:
    """Row ``rid``'s hash as hex (``None``: no such row); a stored value that is not a
    digest's bytes as a string no hex digest equals."""
    found = conn.execute("SELECT row_hash FROM audit_log WHERE id = ?", (rid,)).fetchone()
    if found is None:
        return None
    value = found[0]
    if value is None:
        return None
    if isinstance(value, bytes | memoryview | bytearray):
        return bytes(value).hex()
    return f"not a digest: {value!r}"


def _max_id(conn: RawConnection) -> int:
    found = conn.execute("SELECT max(id) FROM audit_log").fetchone()
    return int(found[0] or 0)


def _report(
    source: str, walk: Walk, *, checkpoints: int = 0, extra: Break | None = None
) -> dict[str, Any]:
    broken = walk.broken or extra
    return {
        "ok": broken is None,
        "source": source,
        "rows_checked": walk.rows,
        "head_id": walk.last_id,
        "head_hash": walk.last_hash,
        "first_broken_id": broken.row_id if broken is not None and broken.row_id else None,
        "problem": broken.kind if broken is not None else None,
        "message": broken.message if broken is not None else None,
        "checkpoints_checked": checkpoints,
    }


def _check_head(
    conn: RawConnection, integ: Integrity, head: tuple[int, str] | None
) -> Break | None:
    """The head the keystore recorded must still be in the log, with the same hash."""
    if head is None or head[0] == 0:
        return None
    rid, digest = head
    at = _row_hash_at(conn, rid)
    if at == digest:
        return None
    last = _max_id(conn)
    if at is None and last < rid:
        return Break(
            0,
            "truncated",
            f"the audit log ends at row {last}, but this wallet committed rows up to {rid}: "
            "rows were deleted or the write-ahead log (-wal file) was lost",
        )
    return Break(
        rid,
        "altered" if at is not None else "deleted",
        f"audit row {rid}, the last one this wallet recorded, is no longer what it committed",
    )


def _check_checkpoint(
    conn: RawConnection, integ: Integrity, cp: tuple[int, str, int, str, str, str]
) -> Break | None:
    seq, digest, created_at, wallet_id, public_key, signature = cp
    if (
        wallet_id != integ.wallet_id
        or public_key != integ.public_key
        or not integ.checkpoint_ok(seq, digest, created_at, signature)
    ):
        return Break(seq, "checkpoint", f"the checkpoint at row {seq} is not signed by this wallet")
    if _row_hash_at(conn, seq) != digest:
        return Break(
            seq,
            "checkpoint",
            f"audit row {seq} does not match the signed checkpoint of {created_at}",
        )
    return None


def _where(db: Any) -> str:
    """The database as reports name it: its path, or a PostgreSQL URL without password."""
    return str(db.location)


def verify_recent(db: Any, integ: Integrity) -> dict[str, Any]:
    """Verify the rows since the newest valid checkpoint, and the recorded head (open time)."""
    head = integ.read_head()  # before the snapshot: every recorded head is committed
    with db.read() as uow:
        conn = _raw(uow)
        start_id, start_hash = integ.anchor if integ.anchor is not None else (0, GENESIS)
        checked = 0
        for cp in _checkpoints(conn)[:8]:
            checked += 1
            if _check_checkpoint(conn, integ, cp) is None and cp[0] >= start_id:
                start_id, start_hash = cp[0], cp[1]
                integ.last_checkpoint_seq = max(integ.last_checkpoint_seq, cp[0])
                break
        if start_id and _row_hash_at(conn, start_id) != start_hash:
            gone = Break(
                start_id, "deleted", f"audit row {start_id}, anchored in the keystore, is gone"
            )
            return _report(
                _where(db), Walk(0, start_id, start_hash, None), checkpoints=checked, extra=gone
            )
        walk = integ.walk(conn, after_id=start_id, after_hash=start_hash)
        extra = _check_head(conn, integ, head) if walk.broken is None else None
        return _report(_where(db), walk, checkpoints=checked, extra=extra)


def verify_file(
    conn: RawConnection,
    integ: Integrity,
    source: str,
    *,
    head: tuple[int, str] | None,
    checkpoint: Any = None,
) -> dict[str, Any]:
    """Verify a whole audit log (a live database or a backup) from its first row."""
    walk = integ.walk(conn)
    checked = 0
    extra: Break | None = None
    if walk.broken is None:
        for cp in _checkpoints(conn):
            checked += 1
            extra = _check_checkpoint(conn, integ, cp)
            if extra is not None:
                break
    if walk.broken is None and extra is None and checkpoint is not None:
        checked += 1
        extra = _check_checkpoint(
            conn,
            integ,
            (
                checkpoint.seq,
                checkpoint.head_hash,
                checkpoint.created_at,
                checkpoint.wallet_id,
                checkpoint.public_key,
                checkpoint.signature,
            ),
        )
    if walk.broken is None and extra is None:
        extra = _check_head(conn, integ, head)
    return _report(source, walk, checkpoints=checked, extra=extra)


# =========================================================================== row checks


def _tampered(message: str, entity: str, entity_id: str | None, **fields: Any) -> Exception:
    from waiaas.errors import TamperDetectedError

    return TamperDetectedError(message, entity=entity, problem="mac", entity_id=entity_id, **fields)


def check_agent(integ: Integrity, agent: Any) -> None:
    """The agent's owner binding must carry its MAC (an edited owner_address does not)."""
    if not integ.owner_ok(agent.id, agent.owner_address, agent.owner_mac):
        raise _tampered(
            f"the owner address of agent {agent.id} was changed outside waiaas",
            "agent",
            agent.id,
        )


def policy_scope(agent_id: str | None) -> str:
    return f"policy-set:{agent_id or '*'}"


def check_policies(integ: Integrity, uow: Any, agent_id: str, rows: list[Any]) -> None:
    """Each enabled policy of ``agent_id`` (its own and the global ones) carries its MAC, and
    the set of them is the one the wallet last wrote (none deleted, disabled or added)."""
    for row in rows:
        if not integ.policy_ok(row):
            raise _tampered(
                f"policy {row.id} was changed or inserted outside waiaas", "policy", row.id
            )
    for scope in (agent_id, None):
        mine = [r for r in rows if r.agent_id == scope]
        stored = uow.state.get(policy_scope(scope))
        expected = integ.policy_set_mac(scope or "*", mine)
        if not isinstance(stored, dict) or not hmac.compare_digest(
            str(stored.get("mac")), expected
        ):
            who = f"agent {scope}" if scope else "global policies"
            raise _tampered(
                f"the set of policies of {who} was changed outside waiaas (a policy was "
                "deleted, disabled or added)",
                "policy",
                scope,
            )


def seal_policy_scope(integ: Integrity, uow: Any, agent_id: str | None, now: int) -> None:
    """Recompute the MAC of one scope's enabled policy set after a change."""
    from sqlmodel import col, select

    from waiaas.db.tables import PolicyRow

    stmt = select(PolicyRow)
    stmt = stmt.where(
        PolicyRow.agent_id == agent_id
        if agent_id is not None
        else col(PolicyRow.agent_id).is_(None)
    )
    rows = list(uow.session.exec(stmt))
    for row in rows:
        uow.policies.set_mac(row.id, integ.policy_mac(row))
    uow.state.put(
        policy_scope(agent_id), {"mac": integ.policy_set_mac(agent_id or "*", rows)}, now=now
    )


def check_tx(integ: Integrity, row: Any) -> None:
    """A stored request and its plan (what is evaluated, approved and signed) carry their
    MAC."""
    if not tx_ok(integ, row):
        raise _tampered(
            f"transaction {row.id} was changed outside waiaas after it was admitted",
            "transaction",
            row.id,
            tx_id=row.id,
        )


def check_approval(integ: Integrity, row: Any) -> None:
    """An approval (and the owner's decision recorded on it) carries its MAC."""
    if not approval_ok(integ, row):
        raise _tampered(
            f"the approval of transaction {row.tx_id} was changed outside waiaas",
            "approval",
            row.id,
            tx_id=row.tx_id,
        )


def auto_stop_mark_mac(integ: Integrity, agent_id: str, tx_mark: int, audit_mark: int) -> str:
    """MAC of an agent's AUTO_STOP resume mark (see :func:`waiaas.pipeline.gate.restart_auto_stop`):
    the rows after it are the only ones its AUTO_STOP counters read."""
    return integ.mac("auto-stop-mark", agent_id, int(tx_mark), int(audit_mark))


def check_auto_stop_mark(integ: Integrity, agent_id: str, mark: Mapping[str, Any]) -> None:
    """A resume mark must carry the MAC the wallet wrote: a file-write attacker who moves it
    forward (to reset the denial counter) or copies another agent's is refused.

    Raises:
        TamperDetectedError: entity ``agent``, problem ``mac``.
    """
    try:
        tx_mark, audit_mark = int(mark["tx"]), int(mark["audit"])
    except (KeyError, TypeError, ValueError):
        tx_mark = audit_mark = -1
    stored = mark.get("mac")
    if (
        tx_mark < 0
        or audit_mark < 0
        or not isinstance(stored, str)
        or not hmac.compare_digest(stored, auto_stop_mark_mac(integ, agent_id, tx_mark, audit_mark))
    ):
        raise _tampered(
            f"the AUTO_STOP resume mark of agent {agent_id} was changed outside waiaas (it "
            "would reset the agent's denial and failure counters)",
            "agent",
            agent_id,
        )
