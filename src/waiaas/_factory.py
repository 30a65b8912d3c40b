"""The composition root: :func:`build_wallet` opens the database and the keystore, builds
every collaborator of :class:`~waiaas.wallet.Wallet`, finishes what a crash left behind and
hands them to the ``Wallet`` constructor. ``Wallet.open`` is its only caller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from waiaas import integrity
from waiaas.background import BackgroundRunner
from waiaas.chains.base import ChainAdapter
from waiaas.chains.families import native_asset_for
from waiaas.clock import Clock, SystemClock
from waiaas.config import WalletConfig
from waiaas.db import POSTGRESQL, Database, parse_target
from waiaas.errors import (
    InvalidInputError,
    KeystoreMismatchError,
    KeystoreMissingError,
    TamperDetectedError,
    WaiaasError,
)
from waiaas.keystore import Keystore, check_password_strength, resolve_password
from waiaas.pipeline.engine import Pipeline, PipelineHooks
from waiaas.pipeline.gate import PolicyGate
from waiaas.policy.model import PriceOracle
from waiaas.services.agent_access import AgentAccess
from waiaas.services.agents import AgentService
from waiaas.services.policies import PolicyService
from waiaas.services.queries import QueryService
from waiaas.sessions import SessionManager
from waiaas.types import AuditEvent, AuditReport

if TYPE_CHECKING:
    from waiaas.notify.base import Notifier
    from waiaas.pipeline.notifications import PipelineNotifier
    from waiaas.wallet import Wallet

__all__ = ["build_wallet"]

log = logging.getLogger("waiaas")

_KEYSTORE_STATE = "keystore"  # wallet_state key: {"id": <keystore id>}


@dataclass(frozen=True)
class _Options:
    config: WalletConfig
    clock: Clock
    adapters: dict[tuple[str, str], ChainAdapter]
    notifier: Notifier | None
    price_oracle: PriceOracle | None
    hooks: PipelineHooks | None


def _adapters(chains: Iterable[ChainAdapter]) -> dict[tuple[str, str], ChainAdapter]:
    adapters: dict[tuple[str, str], ChainAdapter] = {}
    for adapter in chains:
        if not isinstance(adapter, ChainAdapter):
            raise InvalidInputError(
                f"{adapter!r} does not implement the ChainAdapter protocol", field="chains"
            )
        key = (adapter.chain, adapter.network)
        if key in adapters:
            raise InvalidInputError(f"two adapters for {key[0]}/{key[1]}", field="chains")
        adapters[key] = adapter
    return adapters


def _new_keystore_at(path: object, config: WalletConfig) -> bool:
    """Whether opening ``path`` would create a new keystore (False when unsure: the path is
    validated, with a proper error, by ``Database.open``)."""
    if not isinstance(path, str | os.PathLike):
        return False
    try:
        target = parse_target(path)
        if target.path is None:
            return False  # PostgreSQL: checked once the database is open
        if target.path.exists() and config.keystore_backend != "file":
            return False  # the keystore may be in the database: checked once it is open
        if config.keystore_backend == "database":
            return True
        return not Keystore.exists(Path(config.keystore_dir or f"{target.path}.keystore"))
    except (OSError, ValueError):
        return False


def keystore_backend(db: Database, config: WalletConfig) -> str:
    """``"file"`` or ``"database"``: where this wallet's keystore lives (``auto`` resolved:
    the database on PostgreSQL or when the database holds a keystore, else files).

    Raises:
        InvalidInputError: ``"file"`` on PostgreSQL without ``keystore_dir``.
    """
    dialect = db.dialect
    choice = config.keystore_backend
    if choice == "auto":
        # SQLite: files, unless this database already holds its keystore (created with
        # "database", or moved there by `waiaas keystore migrate-to-database`).
        return "database" if dialect == POSTGRESQL or Keystore.exists(db) else "file"
    if choice == "file" and dialect == POSTGRESQL and config.keystore_dir is None:
        raise _file_needs_dir()
    return choice


def _file_needs_dir() -> InvalidInputError:
    return InvalidInputError(
        "keystore_backend='file' on PostgreSQL needs WalletConfig.keystore_dir (there is "
        "no database file to put the keystore beside); or use the database backend",
        field="keystore_backend",
    )


def _default_keystore_dir(db: Database, config: WalletConfig) -> Path | None:
    if config.keystore_dir is not None:
        return Path(config.keystore_dir)
    return Path(f"{db.path}.keystore") if db.path is not None else None


def build_wallet(
    path: str | os.PathLike[str],
    *,
    password: str | None,
    chains: Iterable[ChainAdapter],
    config: WalletConfig | None,
    clock: Clock | None,
    notifier: Notifier | None,
    price_oracle: PriceOracle | None,
    hooks: PipelineHooks | None,
) -> Wallet:
    """Open (or create) the wallet at ``path``: see ``Wallet.open`` for the arguments and
    the errors. The background runner is built, not started."""
    config = config if config is not None else WalletConfig()
    if not isinstance(config, WalletConfig):
        raise InvalidInputError("config must be a WalletConfig", field="config")
    options = _Options(
        config=config,
        clock=clock if clock is not None else SystemClock(),
        adapters=_adapters(chains),
        notifier=notifier,
        price_oracle=price_oracle,
        hooks=hooks,
    )
    if (
        config.keystore_backend == "file"
        and config.keystore_dir is None
        and isinstance(path, str | os.PathLike)
        and parse_target(path).dialect == POSTGRESQL
    ):
        raise _file_needs_dir()  # before any connection is made
    if password is not None and _new_keystore_at(path, config):
        # A new wallet: refuse a weak password before any file is created.
        check_password_strength(password, config.min_password_length)
    db = Database.open(path, pool_size=config.pool_size)
    try:
        backend = keystore_backend(db, config)
        where: Path | Database = db
        if backend == "file":
            directory = _default_keystore_dir(db, config)
            assert directory is not None  # keystore_backend() refused PostgreSQL without one
            where = directory
        # The keyring entry is per database: its path, or its redacted URL on PostgreSQL.
        secret = resolve_password(password, keyring_user=db.location)
        keystore = _open_keystore(db, where, secret, options)
        del secret
        return _compose(db, keystore, options)
    except BaseException:
        db.close()
        raise


def _compose(db: Database, keystore: Keystore, o: _Options) -> Wallet:
    from waiaas.notify import ChannelService, NotificationDispatcher
    from waiaas.wallet import Wallet

    seal = integrity.seal(
        db, keystore, clock=o.clock, checkpoint_rows=o.config.audit_checkpoint_rows
    )
    tampered = _verify_on_open(db, seal, o.config)
    sessions = SessionManager(db, keystore, o.clock, o.config)
    channels = ChannelService(db, keystore, o.clock)
    target = o.notifier
    if target is None:
        target = NotificationDispatcher(channels.source(), clock=o.clock)
    late: list[QueryService] = []  # the queries need the pipeline, whose notifier needs them
    gate = PolicyGate(o.config, o.price_oracle)
    pipeline = Pipeline(
        db=db,
        keys=keystore,
        adapters=o.adapters,
        sessions=sessions,
        gate=gate,
        clock=o.clock,
        config=o.config,
        notifier=_pipeline_notifier(db, target, o, late),
        hooks=o.hooks,
    )
    agents = AgentService(db, keystore, o.clock, sessions, pipeline)
    policies = PolicyService(db, o.clock, o.config, networks=tuple(o.adapters))
    queries = QueryService(db, keystore, o.clock, o.config, pipeline, sessions, agents, policies)
    late.append(queries)
    if tampered is not None:
        _report_tamper(db, seal, pipeline, tampered, o.clock)
    _audit(db, o.clock, AuditEvent.KEYSTORE_UNLOCKED)
    _audit(db, o.clock, AuditEvent.DAEMON_STARTED, {"chains": [f"{c}/{n}" for c, n in o.adapters]})
    agents.recover()
    pipeline.recover()
    return Wallet(
        db=db,
        keystore=keystore,
        integrity=seal,
        sessions=sessions,
        channels=channels,
        pipeline=pipeline,
        agents=agents,
        policies=policies,
        queries=queries,
        agent_access=AgentAccess(db, sessions, gate, o.clock, o.config),
        runner=BackgroundRunner(
            db, pipeline.process_due, checkpoint_interval=o.config.checkpoint_interval
        ),
        config=o.config,
        clock=o.clock,
    )


def _pipeline_notifier(
    db: Database, target: Notifier, o: _Options, late: list[QueryService]
) -> PipelineNotifier:
    """The pipeline's notifier: events to ``target``, with the approval link and the
    transaction's description read from the queries (``late``: built after the pipeline)."""
    from waiaas.pipeline.notifications import PipelineNotifier

    return PipelineNotifier(
        db,
        target,
        o.clock,
        link=_quietly(lambda tx_id: late[0].approval_link(tx_id), "no approval link"),
        display=_quietly(lambda tx_id: late[0].display(tx_id), "cannot describe"),
        native=lambda chain: native_asset_for(chain, o.adapters.values()),
    )


def _quietly(read: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """``read``, logging a refusal and answering ``None`` (for notification messages)."""

    def quiet(tx_id: str) -> Any:
        try:
            return read(tx_id)
        except WaiaasError as exc:
            log.warning("%s for %s: %s", what, tx_id, exc)
            return None

    return quiet


def _audit(db: Database, clock: Clock, event: AuditEvent, details: Any = None) -> None:
    with db.write() as uow:
        uow.audit.append(event, actor="system", now=clock.now(), details=details)
        uow.commit()


def _verify_on_open(
    db: Database, seal: integrity.Integrity, config: WalletConfig
) -> AuditReport | None:
    """Verify the audit rows since the last signed checkpoint and the recorded head.

    Returns the report when broken and ``config.on_tamper == "report"``; raises
    :class:`TamperDetectedError` when broken and ``"refuse"``; None when intact.
    """
    report = AuditReport(**integrity.verify_recent(db, seal))
    if report.ok:
        return None
    log.critical("audit log integrity: %s", report.message)
    if config.on_tamper == "refuse":
        raise TamperDetectedError(
            f"the audit log was tampered with: {report.message} (verify_audit() from a "
            "backup, or open with WalletConfig(on_tamper='report') to investigate)",
            entity="audit_log",
            problem=report.problem or "altered",
            entity_id=str(report.first_broken_id) if report.first_broken_id else None,
            report=report,
        )
    return report


def _report_tamper(
    db: Database, seal: integrity.Integrity, pipeline: Pipeline, report: AuditReport, clock: Clock
) -> None:
    """Record a broken chain found at open, notify, and re-anchor at the log as found."""
    details = report.model_dump(mode="json", exclude={"source"})
    with db.write() as uow:
        uow.audit.append(
            AuditEvent.TAMPER_DETECTED, actor="system", now=clock.now(), details=details
        )
        head = uow.audit.head()
        seal.write_checkpoint(uow, head)
        uow.commit()
    seal.reset_head(*head)
    pipeline.publish(
        AuditEvent.TAMPER_DETECTED,
        severity="critical",
        entity="audit_log",
        problem=report.problem,
        reason=report.message,
    )


def _open_keystore(db: Database, where: Path | Database, secret: str, o: _Options) -> Keystore:
    """Open the keystore that belongs to this database, or create one for a new database.

    ``where`` is the keystore directory (file backend) or ``db`` itself (database backend).
    The database records its keystore's id (``wallet_state`` key ``keystore``). A
    database that has agents, or that recorded an id, never gets a new empty keystore:
    its keys would be lost for good, so opening is refused with what to restore.
    """
    with db.read() as uow:
        recorded = uow.state.get(_KEYSTORE_STATE)
        has_agents = bool(uow.agents.list())
    expected = recorded.get("id") if isinstance(recorded, dict) else None
    in_db = isinstance(where, Database)
    if Keystore.exists(where):
        keystore = Keystore.open(where, clock=o.clock)
        found = keystore.keystore_id
        if expected is not None and found != expected:
            raise KeystoreMismatchError(
                f"the keystore in the {keystore.location} (id {found}) is not the one this "
                f"database was created with (id {expected}); "
                + (
                    "restore the database (with its keystore_records) from one backup"
                    if in_db
                    else "restore that keystore directory from the backup taken with the "
                    "database, or point WalletConfig.keystore_dir at it"
                ),
                path=keystore.location,
                expected_id=str(expected),
                found_id=found,
            )
        keystore.unlock(secret)
    elif expected is not None or has_agents:
        raise _missing(db, where, expected, o.config)
    else:
        check_password_strength(secret, o.config.min_password_length)
        keystore = Keystore.create(where, secret, kdf=o.config.kdf, clock=o.clock)
    if expected is None:
        _record_keystore(db, keystore, o.clock)
    return keystore


def _missing(
    db: Database, where: Path | Database, expected: object, config: WalletConfig
) -> KeystoreMissingError:
    """The refusal for a database whose keystore is not where this configuration looks."""
    created = f"was created with keystore {expected}" if expected else "has agents"
    if isinstance(where, Database):
        directory = _default_keystore_dir(db, config)
        hint = (
            f" Its keystore is in files at {str(directory)!r}: open it with "
            "WalletConfig(keystore_backend='file'), or move it into the database with "
            "`waiaas keystore migrate-to-database`."
            if directory is not None and Keystore.exists(directory)
            else " If it keeps its keys in files, open it with "
            "WalletConfig(keystore_backend='file', keystore_dir=...) or move them in with "
            "`waiaas keystore migrate-to-database --keystore-dir ...`; otherwise restore the "
            "database from a backup that has its keystore_records."
        )
        return KeystoreMissingError(
            "this database holds no keystore (its keystore_records table has no header), "
            f"but it {created}: a new keystore would lose every agent's key.{hint}",
            path=db.location,
            expected_id=None if expected is None else str(expected),
        )
    hint = (
        " This database holds its keystore itself: open it with "
        "WalletConfig(keystore_backend='database')."
        if Keystore.exists(db)
        else ""
    )
    return KeystoreMissingError(
        f"no keystore at {str(where)!r}, but this database {created}: restore the keystore "
        "directory from the backup taken with the database (or point "
        "WalletConfig.keystore_dir at it); a new keystore would lose every agent's key." + hint,
        path=str(where),
        expected_id=None if expected is None else str(expected),
    )


def _record_keystore(db: Database, keystore: Keystore, clock: Clock) -> None:
    """Record the keystore's id in the database (a new wallet, or one from before ids)."""
    try:
        with db.write() as uow:
            if uow.state.get(_KEYSTORE_STATE) is None:
                uow.state.put(_KEYSTORE_STATE, {"id": keystore.keystore_id}, now=clock.now())
                uow.commit()
    except BaseException:
        keystore.lock()
        raise
