"""Signing claims: a transaction moved to EXECUTING that one call may sign.

A claim records who holds it (token, process, host, time) and the nonce it reserved; bytes
are sent only after they are recorded, so a claim without recorded bytes whose holder is gone
is released and the transaction signed afresh (:func:`_claim_is_stale`).
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from waiaas.chains.base import ChainAdapter
from waiaas.db.tables import AgentRow, TransactionRow
from waiaas.pipeline.txmeta import ClaimMeta, TxMeta
from waiaas.types import TxStatus

S = TxStatus


class _DuplicateBytes(Exception):
    """Signing produced the bytes of another live transaction (raised inside the write
    lock so the unit of work rolls back; the wait happens outside)."""


class _ClaimLost(Exception):
    """The claim this call signed under is gone (released as stale and taken by another
    worker, or the transaction ended): its bytes are dropped, never recorded nor sent."""


@dataclass
class _Claim:
    """A transaction this call moved to EXECUTING and may sign (held until recorded)."""

    token: str
    tx_id: str
    agent: AgentRow
    adapter: ChainAdapter
    meta: TxMeta
    nonce: int | None
    columns: Any  # the row's type, to_address and amount (execution._columns)


@dataclass(frozen=True)
class _Busy:
    """Another transaction of the same agent (``tx_id``) holds a signing claim."""

    tx_id: str
    stale: bool


class _AgentWait:
    """Backoff while another transaction of the agent is being signed, or while another
    executor runs a send's transaction (no lock is held); ``seconds`` bounds the wait."""

    def __init__(self, seconds: float | None = None) -> None:
        bound = _AGENT_WAIT_SECONDS if seconds is None else seconds
        self._deadline = time.monotonic() + bound
        self._delay = 0.005

    def wait(self) -> bool:
        """Sleep a little; ``False`` once the wait has lasted too long."""
        if time.monotonic() > self._deadline:
            return False
        time.sleep(self._delay)
        self._delay = min(self._delay * 2, 0.1)
        return True


#: Claim tokens held by calls running in this process (a claim of this process whose
#: token is not here was left by a call that is gone).
_LIVE_CLAIMS: set[str] = set()
#: Seconds after which a claim whose process cannot be checked (another host, another
#: PID namespace) is taken as abandoned. Taking over a claim that is still being worked
#: on costs only work: its holder's bytes are never recorded, so never sent.
CLAIM_LEASE_SECONDS = 600
_NONCE_ATTEMPTS = 4
_AGENT_WAIT_SECONDS = 60.0  # as long as a unit of work waits for the write lock


@functools.cache
def _host() -> str:
    return socket.gethostname()


def _claim_record(token: str, status: str, nonce: int | None) -> ClaimMeta:
    """The ``claim`` entry of a row's metadata: who holds it, since when, what it reserved."""
    return {
        "token": token,
        "from": str(status),
        "pid": os.getpid(),
        "host": _host(),
        "at": int(time.time()),
        "nonce": nonce,
    }


def _is_claim(meta: TxMeta, row: TransactionRow) -> bool:
    """Whether ``row`` is EXECUTING under a claim with no recorded bytes."""
    return row.status == S.EXECUTING and not meta.get("signed") and bool(meta.get("claim"))


def _holds(meta: TxMeta, row: TransactionRow, token: str) -> bool:
    """Whether ``row`` is EXECUTING under the claim ``token`` with no recorded bytes."""
    claim = meta.get("claim")
    return (
        row.status == S.EXECUTING
        and not meta.get("signed")
        and isinstance(claim, dict)
        and claim.get("token") == token
    )


def _claim_is_stale(claim: Mapping[str, Any]) -> bool:
    """Whether nobody works on ``claim`` any more: a call of this process that is gone, a
    process of this host that is gone, or (anywhere) a lease older than
    :data:`CLAIM_LEASE_SECONDS` of wall-clock time."""
    if claim.get("token") in _LIVE_CLAIMS:
        return False
    pid = claim.get("pid")
    if (
        isinstance(pid, int)
        and claim.get("host") == _host()
        and (pid == os.getpid() or not _process_alive(pid))
    ):
        return True
    at = claim.get("at")
    return not isinstance(at, int) or time.time() - at > CLAIM_LEASE_SECONDS


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie does not); unknown -> alive."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. another user's process
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")
