"""Session verification cost against bare ``jwt.decode`` of the same token, same run.

A *cold* ``SessionManager.verify`` (the first of a token in this process) does what
``jwt.decode`` does (header, HMAC, claims) plus the allow-list checks, one indexed lookup of
the token hash, the agent row, and parsing the session's constraints and usage, in a read
transaction on a real SQLite file. A *warm* one (the token verified before) reuses the
JWT checks and the parsed JSON, and re-reads the session and agent rows in one indexed
statement (revocation, renewal, suspension and expiry are seen at once, from any process).
The baseline is ``jwt.decode`` alone with the same secret. Measured:

* ``jwt.decode (baseline)``;
* ``SessionManager.verify`` warm, and cold (each sample a token never verified before);
* ``verify`` warm after a request was charged to the session (usage changed: parsed again);
* ``verify_in`` inside an open unit of work (what the pipeline does), warm;
* the refusal path (a forged token, which commits an AUTH_FAILED audit row);
* the per-call overhead of an :class:`~waiaas.agent.AgentHandle` on a real wallet (LiteSVM):
  ``handle.transactions(limit=5)`` minus ``wallet.list_transactions(agent_id=..., limit=5)``
  (the same read without the session check; the two timed alternately), against a warm
  ``verify`` of the handle's token measured in the same run (the handle should cost one
  remembered verification, nothing more).

Prints one JSON object per line; runs in well under 30 s.

    PYTHONPATH=src python benchmarks/bench_sessions.py [--n 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from waiaas.config import WalletConfig
from waiaas.db import Database
from waiaas.db.tables import AgentRow, SessionRow
from waiaas.errors import AuthError, NotFoundError
from waiaas.ids import new_id
from waiaas.keystore.keys import b58encode
from waiaas.sessions import JWT_SECRET_NAME, SessionManager
from waiaas.types import Transfer


class _Store:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put_secret(self, name: str, value: bytes) -> None:
        self.data[name] = value

    def get_secret(self, name: str) -> bytes:
        try:
            return self.data[name]
        except KeyError:
            raise NotFoundError("secret", name) from None


class _Clock:
    def now(self) -> int:
        return int(time.time())


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    for _ in range(min(200, n)):  # warm-up
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1000.0)
    return out


def _paired(
    first: Callable[[], Any], second: Callable[[], Any], n: int
) -> tuple[list[float], list[float]]:
    """``first`` and ``second`` timed alternately, ``n`` times each (after a warm-up)."""
    for _ in range(min(200, n)):
        first()
        second()
    a: list[float] = []
    b: list[float] = []
    for _ in range(n):
        t = time.perf_counter_ns()
        first()
        a.append((time.perf_counter_ns() - t) / 1000.0)
        t = time.perf_counter_ns()
        second()
        b.append((time.perf_counter_ns() - t) / 1000.0)
    return a, b


def _stats(name: str, samples: list[float], **extra: Any) -> dict[str, Any]:
    q = statistics.quantiles(samples, n=100)
    return {
        "bench": name,
        "n": len(samples),
        "p50_us": round(statistics.median(samples), 2),
        "p99_us": round(q[98], 2),
        "mean_us": round(statistics.fmean(samples), 2),
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="iterations per measurement")
    parser.add_argument("--sessions", type=int, default=2000, help="other live sessions in the DB")
    args = parser.parse_args()
    # Every refusal logs a warning; the measurement should not include a console.
    logging.getLogger("waiaas").addHandler(logging.NullHandler())
    logging.getLogger("waiaas").propagate = False

    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(Path(tmp) / "bench.db")
        store = _Store()
        mgr = SessionManager(db, store, _Clock(), WalletConfig())
        now = int(time.time())
        agent_id = new_id()
        with db.write() as uow:
            uow.agents.add(
                AgentRow(
                    id=agent_id,
                    name="bench",
                    chain="solana",
                    network="devnet",
                    public_key=b58encode(os.urandom(32)),
                    status="ACTIVE",
                    created_at=now,
                    updated_at=now,
                )
            )
            uow.commit()
        # Other sessions, so the token-hash lookup works on a table of realistic size.
        with db.write() as uow:
            for _ in range(args.sessions):
                uow.session.add(
                    SessionRow(
                        id=new_id(),
                        agent_id=agent_id,
                        token_hash=os.urandom(32).hex(),
                        expires_at=now + 3600,
                        created_at=now,
                    )
                )
            uow.commit()
        issued = mgr.issue(
            agent_id, constraints={"max_amount_per_tx": 10**9, "allowed_tx_types": ["TRANSFER"]}
        )
        token = issued.token
        secret = store.data[JWT_SECRET_NAME]
        fresh = [mgr.issue(agent_id).token for _ in range(max(args.n // 10, 100))]

        def bare() -> None:
            jwt.decode(token, secret, algorithms=["HS256"])

        def verify() -> None:
            mgr.verify(token)

        uow = db.read().__enter__()

        def verify_in() -> None:
            mgr.verify_in(uow, token, now)

        forged = jwt.encode(
            jwt.decode(token, options={"verify_signature": False}),
            os.urandom(32),
            algorithm="HS256",
        )

        def refuse() -> None:
            with contextlib.suppress(AuthError):
                mgr.verify(forged)

        base = _timed(bare, args.n)
        warm = _timed(verify, args.n)
        cold = []
        for other in fresh:  # each token verified once: nothing remembered yet
            t = time.perf_counter_ns()
            mgr.verify(other)
            cold.append((time.perf_counter_ns() - t) / 1000.0)
        inner = _timed(verify_in, args.n)
        uow.__exit__(None, None, None)
        charged = []
        request = Transfer(to=b58encode(os.urandom(32)), amount=1)
        for _ in range(max(args.n // 10, 100)):
            with db.write() as w:  # one request charged: the session's usage changes
                mgr.enforce_and_record(
                    w, mgr.verify_in(w, token, now), request, network="devnet", now=now
                )
                w.commit()
            t = time.perf_counter_ns()
            mgr.verify(token)
            charged.append((time.perf_counter_ns() - t) / 1000.0)
        refused = _timed(refuse, max(args.n // 5, 50))
        db.close()

    base_p50 = statistics.median(base)
    env = {"python": platform.python_version(), "pyjwt": jwt.__version__}
    rows = [
        _stats("jwt.decode (baseline)", base, **env),
        _stats(
            "SessionManager.verify warm",
            warm,
            ratio_p50=round(statistics.median(warm) / base_p50, 2),
            live_sessions=args.sessions + 1 + len(fresh),
        ),
        _stats(
            "SessionManager.verify cold (first verify of a token)",
            cold,
            ratio_p50=round(statistics.median(cold) / base_p50, 2),
        ),
        _stats(
            "SessionManager.verify warm, after a request was charged",
            charged,
            ratio_p50=round(statistics.median(charged) / base_p50, 2),
        ),
        _stats(
            "SessionManager.verify_in (open uow) warm",
            inner,
            ratio_p50=round(statistics.median(inner) / base_p50, 2),
        ),
        _stats(
            "SessionManager.verify refused (forged, audited)",
            refused,
            ratio_p50=round(statistics.median(refused) / base_p50, 2),
        ),
    ]
    rows += _handle_overhead(args.n)
    for row in rows:
        print(json.dumps(row), flush=True)


def _handle_overhead(n: int) -> list[dict[str, Any]]:
    """AgentHandle per-call overhead vs a warm verify of the same token, same run."""
    from waiaas.chains.solana import SolanaAdapter
    from waiaas.testing import FrozenClock, fund, local_wallet

    with tempfile.TemporaryDirectory() as tmp:
        clock = FrozenClock(int(time.time()))
        with local_wallet(tmp, chains=[SolanaAdapter.local()], clock=clock) as wallet:
            agent = wallet.create_agent("bench", "solana")
            fund(wallet, agent.id, 10**10)
            token = wallet.issue_session(agent.id).token
            wallet.send(token, Transfer(to=b58encode(os.urandom(32)), amount=1000))
            handle = wallet.agent(token)
            # A second manager over the same file and secret store: the same verify code
            # the wallet runs, measured on its own (the "bare verify" of this wallet's token).
            db = Database.open(wallet.path)
            try:
                secrets = _WalletSecrets(wallet)
                mgr = SessionManager(db, secrets, clock, wallet.config)
                bare = _timed(lambda: mgr.verify(token), n)
            finally:
                db.close()
            # The same read with and without the handle's session check, interleaved so
            # both see the same machine load.
            plain, through = _paired(
                lambda: wallet.list_transactions(agent_id=agent.id, limit=5),
                lambda: handle.transactions(limit=5),
                n,
            )
    bare_p50 = statistics.median(bare)
    # the median of the paired differences: robust to load that drifts during the run
    overhead = statistics.median(b - a for a, b in zip(plain, through, strict=True))
    return [
        _stats("wallet verify of the handle's token, warm (same run)", bare),
        _stats("Wallet.list_transactions(agent_id, limit=5) (no session check)", plain),
        _stats(
            "AgentHandle.transactions(limit=5)",
            through,
            overhead_p50_us=round(overhead, 2),
            overhead_ratio_to_verify_p50=round(overhead / bare_p50, 2),
        ),
    ]


class _WalletSecrets:
    """The wallet's named secrets, read through a second keystore handle on its directory."""

    def __init__(self, wallet: Any) -> None:
        from waiaas.keystore import Keystore
        from waiaas.testing import TEST_PASSWORD

        self._ks = Keystore.open(wallet.keystore_path)
        self._ks.unlock(TEST_PASSWORD)

    def put_secret(self, name: str, value: bytes) -> None:
        raise AssertionError("the benchmark never creates secrets")

    def get_secret(self, name: str) -> bytes:
        return bytes(self._ks.get_secret(name))


if __name__ == "__main__":
    main()
