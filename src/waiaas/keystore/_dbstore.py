"""The database backend of the keystore: one row per record in ``keystore_records``.

Internal module. The rows (migration 0010) mirror the files of the file backend::

    name                              body (the same JSON document as the file)
    header                            format, keystore id, Argon2id parameters + salt,
                                      the wrapped seal key
    keys/<key_id>                     one sealed key per agent
    archive/<key_id>/<archive_id>     keys replaced by rotate_key / remove_key
    secrets/<name>                    named secrets
    audit-head                        the MAC'd audit chain head (waiaas.integrity)

``generation`` is the password generation a row was sealed under; there is only ever one
generation in the table, because a password change deletes and rewrites every sealed row in
**one database transaction**: a crash anywhere leaves all-old or all-new.

Transactions. A write joins the write unit of work the calling thread already has open on
the database (inside a savepoint), so a key rotation commits together with the agent row and
its ``KEY_ROTATED`` audit row; otherwise it opens its own write unit of work. Writers read
the header ``FOR SHARE`` and a password change ``FOR UPDATE`` (PostgreSQL; SQLite has one
writer at a time anyway), so no record is ever written under a generation that is being
replaced. Reads outside a write run on the newest committed state.

The master key is never stored: each host derives it from the password at ``unlock``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlalchemy import Connection, delete, insert, select, update

from waiaas.db.tables import KeystoreRecordRow
from waiaas.errors import KeystoreError, NotFoundError
from waiaas.keystore._backend import ARCHIVE, HEADER, KEYS, SECRETS, Address, StaleRecord

if TYPE_CHECKING:
    from waiaas.clock import Clock
    from waiaas.db.database import Database

__all__ = ["AUDIT_HEAD", "TABLE", "DatabaseBackend"]

TABLE: Final = "keystore_records"
AUDIT_HEAD: Final = "audit-head"
_HEADER_NAME: Final = "header"
_ID_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_-])?")
_READ_SQL: Final = "SELECT generation, body FROM keystore_records WHERE name = ?"

_t = KeystoreRecordRow.__table__  # type: ignore[attr-defined]


def _name(address: Address) -> str:
    return "/".join(address)


def _valid_id(stem: str) -> bool:
    return bool(_ID_RE.fullmatch(stem)) and ".." not in stem


def known_name(name: str) -> bool:
    """Whether ``name`` is a row this backend writes (anything else is refused by a change)."""
    if name in (_HEADER_NAME, AUDIT_HEAD):
        return True
    parts = name.split("/")
    if len(parts) == 2 and parts[0] in (KEYS, SECRETS):
        return _valid_id(parts[1])
    return len(parts) == 3 and parts[0] == ARCHIVE and _valid_id(parts[1]) and _valid_id(parts[2])


class DatabaseBackend:
    """Records as rows of ``keystore_records`` in a waiaas database (see the module docstring)."""

    kind: Literal["file", "database"] = "database"

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._local = threading.local()  # .conn: the connection of this thread's writer

    @property
    def database(self) -> Database:
        return self._db

    @property
    def path(self) -> Path | None:
        return None

    @property
    def location(self) -> str:
        where = getattr(self._db, "location", None) or str(self._db.path)
        return f"database {where} (table {TABLE})"

    # ------------------------------------------------------------------ connections

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """The writer's connection, the caller's open write transaction, or a read one."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        outer = self._db.current_write()
        if outer is not None:
            outer.session.flush()
            yield outer.session.connection()
            return
        with self._db.read() as uow:
            yield uow.session.connection()

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            yield  # re-entered by the same thread: already in the transaction
            return
        outer = self._db.current_write()
        if outer is not None:
            outer.session.flush()
            conn = outer.session.connection()
            savepoint = conn.begin_nested()
            self._local.conn = conn
            try:
                yield
            except BaseException:
                self._local.conn = None
                savepoint.rollback()
                raise
            self._local.conn = None
            savepoint.commit()
            return
        with self._db.write() as uow:
            self._local.conn = uow.session.connection()
            try:
                yield
                uow.commit()
            finally:
                self._local.conn = None

    def _conn(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:  # pragma: no cover - a bug in the keystore, not a user error
            raise RuntimeError("keystore write outside its writer")
        return conn

    # ------------------------------------------------------------------ existence

    def _header_row(self, conn: Connection, lock: Literal["none", "share", "update"]) -> Any:
        stmt = select(_t.c.generation, _t.c.body).where(_t.c.name == _HEADER_NAME)
        if lock != "none":
            stmt = stmt.with_for_update(read=lock == "share")
        return conn.execute(stmt).first()

    def exists(self) -> bool:
        with self._reading() as conn:
            return self._header_row(conn, "none") is not None

    def prepare_create(self) -> None:
        if self.exists():
            raise KeystoreError(
                f"a keystore already exists in the {self.location}; use Keystore.open",
                path=self.location,
            )

    def create(self, header: bytes) -> None:
        with self.writer():
            conn = self._conn()
            rows = conn.execute(select(_t.c.name).where(_t.c.name != AUDIT_HEAD)).all()
            if any(row.name == _HEADER_NAME for row in rows):
                raise KeystoreError(
                    f"a keystore already exists in the {self.location}; use Keystore.open",
                    path=self.location,
                )
            if rows:
                raise KeystoreError(
                    f"cannot create a keystore in the {self.location}: it holds "
                    f"{len(rows)} records but no header (restore the keystore from a backup)",
                    path=self.location,
                )
            self._put_row(conn, _HEADER_NAME, 1, header)

    def open_existing(self) -> None:
        if not self.exists():
            raise NotFoundError("keystore", self.location)

    # ------------------------------------------------------------------ generations

    def current(self) -> int:
        return self.current_header()[0]

    def current_header(self, *, for_change: bool = False) -> tuple[int, bytes, str]:
        writing = getattr(self._local, "conn", None) is not None
        with self._reading() as conn:
            lock: Literal["none", "share", "update"] = (
                ("update" if for_change else "share") if writing else "none"
            )
            row = self._header_row(conn, lock)
        if row is None:
            raise NotFoundError("keystore", self.location)
        generation = row.generation
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
            raise KeystoreError(
                f"keystore header in the {self.location} is corrupt: bad generation",
                path=self.location,
            )
        return generation, str(row.body).encode("utf-8"), self.label(generation, HEADER)

    def stamp(self) -> object:
        # No cheap change token: a record read under a replaced generation says so itself
        # (StaleRecord), and every writer re-reads the header in its transaction.
        return 0

    # ------------------------------------------------------------------ records

    def label(self, generation: int, address: Address) -> str:
        return f"{TABLE}:{_name(address)}"

    def read(self, generation: int, address: Address, limit: int) -> bytes:
        name = _name(address)
        if getattr(self._local, "conn", None) is None and self._db.current_write() is None:
            row: Any = self._db.fetch_one(_READ_SQL, (name,))  # the hot path: one statement
        else:
            with self._reading() as conn:
                found = conn.execute(
                    select(_t.c.generation, _t.c.body).where(_t.c.name == name)
                ).first()
            row = None if found is None else tuple(found)
        if row is None:
            raise FileNotFoundError(name)
        stored_generation, body = row
        if stored_generation != generation:
            raise StaleRecord(name)
        data = str(body).encode("utf-8")
        if len(data) > limit:
            raise OSError(f"{name} is larger than {limit} bytes")
        return data

    def has(self, generation: int, address: Address) -> bool:
        name = _name(address)
        with self._reading() as conn:
            return conn.execute(select(_t.c.name).where(_t.c.name == name)).first() is not None

    def names(
        self, generation: int, folder: Address, *, strict: bool = False, dirs: bool = False
    ) -> list[str]:
        prefix = _name(folder) + "/"
        with self._reading() as conn:
            rows = conn.execute(
                select(_t.c.name).where(_t.c.name.startswith(prefix, autoescape=True))
            ).all()
        found: set[str] = set()
        for (name,) in rows:
            rest = str(name)[len(prefix) :]
            parts = rest.split("/")
            stem = parts[0]
            if (len(parts) == 2 if dirs else len(parts) == 1) and _valid_id(stem):
                found.add(stem)
            elif strict:
                raise KeystoreError(
                    f"unexpected record {name!r} in the {self.location}; remove it first",
                    path=self.location,
                )
        return sorted(found)

    # ------------------------------------------------------------------ writes

    def _put_row(self, conn: Connection, name: str, generation: int, data: bytes) -> None:
        """Write one row: update it, else insert it (the unit a fault-injection test
        interrupts)."""
        body = data.decode("utf-8")
        now = self._clock.now()
        done = conn.execute(
            update(_t)
            .where(_t.c.name == name)
            .values(generation=generation, body=body, updated_at=now)
        )
        if done.rowcount == 0:
            conn.execute(
                insert(_t).values(name=name, generation=generation, body=body, updated_at=now)
            )

    def write(self, generation: int, address: Address, data: bytes) -> None:
        self._put_row(self._conn(), _name(address), generation, data)

    def delete(self, generation: int, address: Address) -> None:
        self._conn().execute(delete(_t).where(_t.c.name == _name(address)))

    def replace_generation(
        self,
        old_generation: int,
        new_generation: int,
        header: bytes,
        records: Sequence[tuple[Address, bytes]],
    ) -> None:
        conn = self._conn()
        row = self._header_row(conn, "update")
        if row is None or row.generation != old_generation:
            raise KeystoreError(
                f"the keystore in the {self.location} changed during the password change; "
                "nothing was changed, try again",
                path=self.location,
            )
        for (name,) in conn.execute(select(_t.c.name)).all():
            if not known_name(str(name)):
                raise KeystoreError(
                    f"unexpected record {name!r} in the {self.location}; remove it first",
                    path=self.location,
                )
        # One transaction: every sealed row goes, the new generation comes; the audit head
        # (MAC'd with the audit key, not the master key) stays.
        conn.execute(delete(_t).where(_t.c.name != AUDIT_HEAD))
        self._put_row(conn, _HEADER_NAME, new_generation, header)
        for address, data in records:
            self._put_row(conn, _name(address), new_generation, data)

    def drop_generation(self, generation: int) -> None:
        return None  # the old rows went in the same transaction
