"""Pipeline benchmark: ``wallet.send`` end to end, per stage, and the database it grows.

Run ``python benchmarks/bench_pipeline.py`` (defaults take about two minutes on 2 cores;
``--quick`` for a smoke run). Prints one JSON object per line:

* ``environment``: Python, SQLite, machine.
* ``throughput`` (``chain`` = ``solana`` / ``evm``; ``claim_path_*``: the same wallet with
  ``Pipeline.presign = False``, every INSTANT send claimed, signed and cleared in commits of
  their own after admission, as before Engine v2): sequential INSTANT transfers through
  ``wallet.send`` for one agent under a realistic policy set (a SPENDING_LIMIT with caps and
  tier thresholds, an ALLOWED_ADDRESSES list of 50 recipients, a RATE_LIMIT), against the
  bare chain client on the **same chain in the same run**: for Solana, solders builds a
  System transfer (``MessageV0.try_compile``), signs it and ``LiteSVM.send_transaction``
  executes it; for EVM, eth-account ``sign_transaction`` with locally computed fields,
  ``send_raw_transaction`` and ``wait_for_transaction_receipt`` on the
  ``EthereumTesterProvider``-backed chain the wallet's adapter uses. Each run starts a
  fresh chain and wallet; the order of the two loops alternates between runs. Figures are
  medians of ``--runs`` runs; ``ratio`` = wallet tx/s / bare tx/s and
  ``overhead_ms_per_tx`` = the wallet's extra time per transaction.
* ``stages``: p50 / p99 milliseconds per pipeline stage of an INSTANT transfer on LiteSVM,
  stamped with ``time.perf_counter()`` from ``PipelineHooks(on_stage=...)``: admission (send
  start -> ``admitted``: session, build + plan + decoded effects, simulation and signing
  before the lock, then under it policies, usage, the row with its signed bytes and its
  audit rows committed as SUBMITTED), record (``admitted`` -> ``recorded``: nothing left to
  do on this path; the claim path claims, signs and clears here), submit (``recorded`` ->
  ``submitted``: sent) and confirm (``submitted`` -> ``send`` returns: confirmation,
  CONFIRMED committed). ``stages_growth`` compares, per stage, the p50 of the first and the
  last ``--growth-window`` sends of that agent (``ms_per_1000_rows``: the slope per 1,000
  earlier transactions of the agent).
* ``statements``: SQL statements and commits per INSTANT send, counted by SQLite, on the
  presigned path and on the claim path (the same-run baseline).
* ``plan_cost`` (``chain`` = ``solana`` on LiteSVM / ``evm`` on eth-tester): what judging the
  exact transaction costs per ``wallet.send``: the same INSTANT transfers through a wallet
  whose adapter shows its plans (build at admission, ``plan_of``, ``decode_plan``, plan digest
  check at signing and, where the adapter can, balance simulation) against a wallet whose
  adapter hides them (the request judged as written), alternating in the same run; medians
  of ``--runs``; ``plan_ms_per_tx`` is the difference, ``ratio`` with / without.
* ``db_growth``: bytes the database file grew by per transaction (``wal_checkpoint
  (TRUNCATE)`` before and after), over ``--db-txs`` real INSTANT transfers by 10 agents
  (CORE-02 §5.3's sizing) on LiteSVM, with the audit rows per transaction, the
  table / index split from ``dbstat``, and the extrapolation to 100k transactions, against
  CORE-02 §5.3's estimate (a ~400 B transaction row + 3 audit rows of ~300 B = ~1.3 KB per
  transaction, ~130 MB per 100k).
* ``db_growth_bulk``: the 100k point measured directly: ``--bulk`` transactions copied
  from the real rows above (fresh ids and hashes, same sizes) with their audit rows,
  bulk-inserted with raw ``executemany`` into a copy of that database.

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from eth_account import Account  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.litesvm import LiteSVM  # noqa: E402
from solders.message import MessageV0  # noqa: E402
from solders.system_program import TransferParams, transfer  # noqa: E402
from solders.transaction import VersionedTransaction  # noqa: E402
from sqlalchemy import event as sa_event  # noqa: E402

from waiaas import Transfer, Wallet  # noqa: E402
from waiaas.chains.base import ChainAdapter  # noqa: E402
from waiaas.chains.evm import EvmAdapter, EvmDevAdapter  # noqa: E402
from waiaas.chains.solana import SolanaAdapter  # noqa: E402
from waiaas.db import database as db_database  # noqa: E402
from waiaas.db.engine import PRAGMAS  # noqa: E402
from waiaas.ids import new_id  # noqa: E402
from waiaas.pipeline.engine import PipelineHooks  # noqa: E402
from waiaas.testing import TEST_PASSWORD, fast_config, fund  # noqa: E402

SOL = 10**9
ETH = 10**18
RECIPIENTS = 50  # size of the ALLOWED_ADDRESSES list
DB_AGENTS = 10  # CORE-02 §5.3 sizes the database for 10 agents
SPEC_TX_ROW = 400  # CORE-02 §5.3: bytes per transactions row
SPEC_AUDIT_ROW = 300  # CORE-02 §5.3: bytes per audit_log row
SPEC_AUDIT_PER_TX = 3
SPEC_PER_TX = SPEC_TX_ROW + SPEC_AUDIT_PER_TX * SPEC_AUDIT_ROW  # 1,300 B
STAGES = ("admission", "record", "submit", "confirm", "total")
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# Per chain: (funding of the agent, amount of the i-th transfer, SPENDING_LIMIT rules).
# The amounts stay INSTANT, are distinct (no two byte-identical transactions) and are
# above Solana's rent-exempt minimum for a new account.
PROFILES: dict[str, tuple[int, Callable[[int], int], dict[str, str]]] = {
    "solana": (
        10_000 * SOL,
        lambda i: SOL // 1000 + i,
        {
            "per_transaction": str(10 * SOL),
            "daily_total": str(100_000 * SOL),
            "instant_max": str(SOL),
            "notify_max": str(5 * SOL),
            "delay_max": str(10 * SOL),
        },
    ),
    "evm": (
        1_000 * ETH,
        lambda i: 10**12 + i,
        {
            "per_transaction": str(10 * ETH),
            "daily_total": str(100_000 * ETH),
            "instant_max": str(ETH // 100),
            "notify_max": str(ETH // 10),
            "delay_max": str(ETH),
        },
    ),
}


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# --------------------------------------------------------------------------- wallet side


@contextmanager
def open_wallet(
    directory: Path, chains: list[ChainAdapter], hooks: PipelineHooks | None = None
) -> Iterator[Wallet]:
    wallet = Wallet.open(
        directory / "wallet.db",
        password=TEST_PASSWORD,
        chains=chains,
        config=fast_config(),
        hooks=hooks,
    )
    try:
        yield wallet
    finally:
        wallet.close()


def provision(wallet: Wallet, adapter: ChainAdapter, name: str) -> tuple[str, str, list[str]]:
    """A funded agent with the benchmark's policy set; returns (agent id, token, recipients)."""
    funding, _, limit = PROFILES[adapter.chain]
    agent = wallet.create_agent(name, adapter.chain)
    fund(wallet, agent.id, funding)
    recipients = [adapter.generate_secret()[1] for _ in range(RECIPIENTS)]
    wallet.add_policy("SPENDING_LIMIT", limit, agent_id=agent.id)
    wallet.add_policy("ALLOWED_ADDRESSES", {"addresses": recipients}, agent_id=agent.id)
    wallet.add_policy(
        "RATE_LIMIT", {"max_requests": 100_000, "window_seconds": 60}, agent_id=agent.id
    )
    token = wallet.issue_session(agent.id, ttl=86_400).token
    return agent.id, token, recipients


def send_one(wallet: Wallet, token: str, recipients: list[str], chain: str, i: int) -> None:
    amount = PROFILES[chain][1](i)
    result = wallet.send(token, Transfer(to=recipients[i % len(recipients)], amount=amount))
    if result.status != "CONFIRMED" or result.tier != "INSTANT":
        raise RuntimeError(f"transfer {i} ended {result.status} ({result.tier}): {result.error}")


def wallet_loop(wallet: Wallet, adapter: ChainAdapter, n: int) -> float:
    """Seconds for ``n`` sequential ``wallet.send`` INSTANT transfers by one new agent."""
    _, token, recipients = provision(wallet, adapter, "bench")
    start = time.perf_counter()
    for i in range(n):
        send_one(wallet, token, recipients, adapter.chain, i)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- statements


def statements(workdir: Path, sends: int = 20) -> None:
    """SQL statements and commits per INSTANT ``wallet.send``, counted by SQLite itself
    (``sqlite3`` trace callback on every connection of the wallet's pool and on the plain
    reader connections of ``Database.fetch_one``: ORM, Core and raw
    DB-API statements alike, BEGIN / COMMIT / ROLLBACK included; the callback repeats a
    statement once per trigger it fires, so consecutive repeats count once), median of
    ``sends`` warm sends on each chain, for the presigned path (the default) and, as the
    same-run baseline, the claim path (``Pipeline.presign = False``: admission commits
    PENDING, then claim, signed bytes, SUBMITTED and CONFIRMED each commit)."""
    plain_connect = db_database.connect_reader
    for chain, presign in itertools.product(("solana", "evm"), (True, False)):
        adapter: Any = (
            SolanaAdapter.local(svm=LiteSVM()) if chain == "solana" else EvmAdapter.local()
        )
        directory = workdir / f"statements-{chain}-{presign}"
        directory.mkdir(parents=True, exist_ok=True)
        with open_wallet(directory, [adapter]) as wallet:
            wallet._pipeline.presign = presign
            _, token, recipients = provision(wallet, adapter, "stmts")
            for i in range(3):  # warm: caches, prepared plans, pooled connections
                send_one(wallet, token, recipients, chain, i)
            traced: list[str] = []
            engine = wallet._db.engine
            engine.dispose()  # every connection from now on is a traced one

            def _trace(dbapi_conn: Any, _record: Any, sink: list[str] = traced) -> None:
                dbapi_conn.set_trace_callback(sink.append)

            sa_event.listen(engine, "connect", _trace)
            # Database.fetch_one's plain reader connections are traced too: the idle ones
            # now, any opened while tracing by the module's connect_reader
            for reader in wallet._db._readers:
                reader.set_trace_callback(traced.append)

            def _traced_reader(path: Any, sink: list[str] = traced) -> Any:
                conn = plain_connect(path)
                conn.set_trace_callback(sink.append)
                return conn

            db_database.connect_reader = _traced_reader  # type: ignore[assignment]

            per_send: list[tuple[int, int]] = []
            for i in range(sends):
                traced.clear()
                send_one(wallet, token, recipients, chain, 100 + i)
                stmts = [t for i, t in enumerate(traced) if i == 0 or traced[i - 1] != t]
                commits = sum(1 for t in stmts if t.strip().upper().startswith("COMMIT"))
                per_send.append((len(stmts), commits))
            sa_event.remove(engine, "connect", _trace)
            db_database.connect_reader = plain_connect  # type: ignore[assignment]
        adapter.close()
        emit(
            bench="pipeline",
            case="statements",
            chain=chain,
            path="presigned" if presign else "claim (baseline)",
            sends=sends,
            statements_per_send=statistics.median(n for n, _ in per_send),
            commits_per_send=statistics.median(c for _, c in per_send),
        )


# --------------------------------------------------------------------------- bare baselines


def bare_litesvm_loop(svm: LiteSVM, n: int) -> float:
    """Seconds for ``n`` bare build + sign + ``send_transaction`` transfers on ``svm``."""
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 10_000 * SOL)
    recipients = [Keypair().pubkey() for _ in range(RECIPIENTS)]
    amount = PROFILES["solana"][1]
    blockhash = svm.latest_blockhash()
    start = time.perf_counter()
    for i in range(n):
        ix = transfer(
            TransferParams(
                from_pubkey=payer.pubkey(),
                to_pubkey=recipients[i % RECIPIENTS],
                lamports=amount(i),
            )
        )
        message = MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash)
        result = svm.send_transaction(VersionedTransaction(message, [payer]))
        if hasattr(result, "err"):
            raise RuntimeError(f"bare transfer {i} failed: {result.err()}")
    return time.perf_counter() - start


def bare_web3_loop(adapter: EvmDevAdapter, n: int) -> float:
    """Seconds for ``n`` bare sign + send_raw + wait_for_receipt transfers on the adapter's
    own eth-tester chain."""
    backend: Any = adapter._backend  # eth-tester behind the adapter
    w3 = backend.w3  # the middleware-free Web3 on that same chain
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, PROFILES["evm"][0])
    account = Account.from_key(secret)
    recipients = [adapter.generate_secret()[1] for _ in range(RECIPIENTS)]
    amount = PROFILES["evm"][1]
    base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])
    nonce = int(w3.eth.get_transaction_count(sender))
    start = time.perf_counter()
    for i in range(n):
        tx = {
            "type": 2,
            "chainId": adapter.chain_id,
            "nonce": nonce + i,
            "to": recipients[i % RECIPIENTS],
            "value": amount(i),
            "gas": 21_000,
            "maxFeePerGas": 2 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.001)
        if int(receipt["status"]) != 1:
            raise RuntimeError(f"bare transfer {i} reverted")
    return time.perf_counter() - start


# --------------------------------------------------------------------------- throughput


def throughput_run(chain: str, n: int, run: int, directory: Path) -> tuple[float, float, float]:
    """One run on a fresh chain: (bare, wallet, wallet on the claim path) seconds; the order
    rotates between runs."""
    adapter: Any
    if chain == "solana":
        svm = LiteSVM()
        adapter = SolanaAdapter.local(svm=svm)

        def bare() -> float:
            return bare_litesvm_loop(svm, n)
    else:
        adapter = EvmAdapter.local()

        def bare() -> float:
            return bare_web3_loop(adapter, n)

    with open_wallet(directory, [adapter]) as wallet:

        def through_wallet() -> float:
            wallet._pipeline.presign = True
            return wallet_loop(wallet, adapter, n)

        def claim_path() -> float:
            wallet._pipeline.presign = False
            try:
                return wallet_loop(wallet, adapter, n)
            finally:
                wallet._pipeline.presign = True

        loops = [bare, through_wallet, claim_path]
        order = loops[run % 3 :] + loops[: run % 3]
        seconds = {fn: fn() for fn in order}
    adapter.close()
    return seconds[bare], seconds[through_wallet], seconds[claim_path]


def throughput(chain: str, n: int, runs: int, workdir: Path) -> None:
    bare_rates: list[float] = []
    wallet_rates: list[float] = []
    claim_rates: list[float] = []
    for run in range(runs):
        directory = workdir / f"{chain}-{run}"
        directory.mkdir()
        bare_seconds, wallet_seconds, claim_seconds = throughput_run(chain, n, run, directory)
        bare_rates.append(n / bare_seconds)
        wallet_rates.append(n / wallet_seconds)
        claim_rates.append(n / claim_seconds)
    bare_rate = statistics.median(bare_rates)
    wallet_rate = statistics.median(wallet_rates)
    claim_rate = statistics.median(claim_rates)
    emit(
        bench="pipeline",
        case="throughput",
        chain=chain,
        n=n,
        runs=runs,
        bare=(
            "litesvm build+sign+send_transaction"
            if chain == "solana"
            else "web3 sign+send_raw+wait_for_receipt (eth-tester)"
        ),
        bare_tx_per_s=round(bare_rate, 1),
        wallet_tx_per_s=round(wallet_rate, 1),
        ratio=round(wallet_rate / bare_rate, 3),
        overhead_ms_per_tx=round(1000 / wallet_rate - 1000 / bare_rate, 2),
        claim_path_tx_per_s=round(claim_rate, 1),
        claim_path_ratio=round(claim_rate / bare_rate, 3),
        presigned_over_claim_path=round(wallet_rate / claim_rate, 2),
        bare_runs=[round(r, 1) for r in bare_rates],
        wallet_runs=[round(r, 1) for r in wallet_rates],
        claim_path_runs=[round(r, 1) for r in claim_rates],
    )


# --------------------------------------------------------------------------- plan cost

_PLAN_CAPABILITIES = frozenset(
    {"plan_of", "plan_of_signed", "account_lookup", "simulate_balance_changes"}
)


class PlanlessAdapter:
    """The same adapter with its plan and simulation capabilities hidden: the pipeline then
    judges the request as written (the baseline of ``plan_cost``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in _PLAN_CAPABILITIES:
            raise AttributeError(name)
        return getattr(self._inner, name)


def plan_cost_run(chain: str, n: int, run: int, directory: Path) -> tuple[float, float, bool]:
    """One run: (seconds with plans, seconds without, whether the adapter simulates)."""
    from waiaas.chains.base import SupportsBalanceSimulation

    adapters: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    order = ("with", "without") if run % 2 == 0 else ("without", "with")
    for label in order:
        adapter: Any = SolanaAdapter.local() if chain == "solana" else EvmAdapter.local()
        adapters[label] = adapter
        shown = adapter if label == "with" else PlanlessAdapter(adapter)
        sub = directory / label
        sub.mkdir()
        with open_wallet(sub, [shown]) as wallet:
            seconds[label] = wallet_loop(wallet, shown, n)
        adapter.close()
    simulates = isinstance(adapters["with"], SupportsBalanceSimulation)
    return seconds["with"], seconds["without"], simulates


def plan_cost(chain: str, n: int, runs: int, workdir: Path) -> None:
    with_rates: list[float] = []
    without_rates: list[float] = []
    simulates = False
    for run in range(runs):
        directory = workdir / f"plan-{chain}-{run}"
        directory.mkdir()
        with_s, without_s, simulates = plan_cost_run(chain, n, run, directory)
        with_rates.append(n / with_s)
        without_rates.append(n / without_s)
    with_rate = statistics.median(with_rates)
    without_rate = statistics.median(without_rates)
    emit(
        bench="pipeline",
        case="plan_cost",
        chain=chain,
        backend="litesvm" if chain == "solana" else "eth-tester",
        n=n,
        runs=runs,
        simulation=simulates,
        baseline="the same wallet.send with the adapter's plans hidden (request as written)",
        with_plan_tx_per_s=round(with_rate, 1),
        without_plan_tx_per_s=round(without_rate, 1),
        ratio=round(with_rate / without_rate, 3),
        plan_ms_per_tx=round(1000 / with_rate - 1000 / without_rate, 2),
        with_runs=[round(r, 1) for r in with_rates],
        without_runs=[round(r, 1) for r in without_rates],
    )


# --------------------------------------------------------------------------- stages


class StageStamps:
    """``PipelineHooks.on_stage`` target: the perf_counter time of each stage boundary."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def __call__(self, name: str, tx_id: str) -> None:
        self.marks[name] = time.perf_counter()


def stages(n: int, growth_window: int, workdir: Path) -> None:
    stamps = StageStamps()
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    directory = workdir / "stages"
    directory.mkdir()
    adapter = SolanaAdapter.local()
    with open_wallet(directory, [adapter], PipelineHooks(on_stage=stamps)) as wallet:
        _, token, recipients = provision(wallet, adapter, "stages")
        for i in range(n):
            stamps.marks.clear()
            start = time.perf_counter()
            send_one(wallet, token, recipients, "solana", i)
            end = time.perf_counter()
            m = stamps.marks
            bounds = (start, m["admitted"], m["recorded"], m["submitted"], end)
            for name, (a, b) in zip(STAGES, itertools.pairwise(bounds), strict=False):
                samples[name].append((b - a) * 1000)
            samples["total"].append((end - start) * 1000)
    adapter.close()
    for name in STAGES:
        values = samples[name]
        emit(
            bench="pipeline",
            case="stages",
            chain="solana",
            stage=name,
            n=n,
            p50_ms=round(percentile(values, 50), 3),
            p99_ms=round(percentile(values, 99), 3),
            mean_ms=round(statistics.fmean(values), 3),
        )
    k = min(growth_window, n // 2)
    for name in STAGES:
        head = statistics.median(samples[name][:k])
        tail = statistics.median(samples[name][-k:])
        emit(
            bench="pipeline",
            case="stages_growth",
            chain="solana",
            stage=name,
            agent_rows_before_first=f"0-{k - 1}",
            agent_rows_before_last=f"{n - k}-{n - 1}",
            first_p50_ms=round(head, 3),
            last_p50_ms=round(tail, 3),
            ms_per_1000_rows=round((tail - head) / (n - k) * 1000, 2),
        )


# --------------------------------------------------------------------------- database growth


def raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for name, value in PRAGMAS:
        conn.execute(f"PRAGMA {name} = {value}")
    return conn


def checkpointed_size(path: Path) -> int:
    conn = raw_connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path.stat().st_size


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes of pages per table, indexes counted with their table (``dbstat``)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        pages = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
        owners = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"))
    finally:
        conn.close()
    out: dict[str, int] = {}
    for name, size in pages.items():
        table = owners.get(name, name)
        kind = "table" if table == name else "index"
        out[f"{table}.{kind}"] = out.get(f"{table}.{kind}", 0) + int(size)
    return out


def counts(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        txs = conn.execute("SELECT count(*) FROM transactions").fetchone()[0]
        audit = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    finally:
        conn.close()
    return int(txs), int(audit)


def split_per_tx(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    keys = ("transactions.table", "transactions.index", "audit_log.table", "audit_log.index")
    return {
        k.replace(".", "_") + "_bytes": round((after.get(k, 0) - before.get(k, 0)) / n, 1)
        for k in keys
    }


def db_growth(n: int, workdir: Path) -> Path:
    """Run ``n`` real transfers by ``DB_AGENTS`` agents; report growth; return the file."""
    directory = workdir / "growth"
    directory.mkdir()
    adapter = SolanaAdapter.local()
    with open_wallet(directory, [adapter]) as wallet:
        agents = [provision(wallet, adapter, f"agent-{k}") for k in range(DB_AGENTS)]
        wallet.checkpoint()
        path = wallet.path
        size0 = path.stat().st_size
        stat0 = table_bytes(path)
        tx0, audit0 = counts(path)
        start = time.perf_counter()
        for i in range(n):
            _, token, recipients = agents[i % DB_AGENTS]
            send_one(wallet, token, recipients, "solana", i // DB_AGENTS)
        seconds = time.perf_counter() - start
        wallet.checkpoint()
        size1 = path.stat().st_size
        stat1 = table_bytes(path)
        tx1, audit1 = counts(path)
    adapter.close()
    per_tx = (size1 - size0) / (tx1 - tx0)
    emit(
        bench="pipeline",
        case="db_growth",
        chain="solana",
        agents=DB_AGENTS,
        transactions=tx1 - tx0,
        audit_rows_per_tx=round((audit1 - audit0) / (tx1 - tx0), 2),
        tx_per_s=round(n / seconds, 1),
        file_bytes_before=size0,
        file_bytes_after=size1,
        bytes_per_tx=round(per_tx, 1),
        **split_per_tx(stat0, stat1, tx1 - tx0),
        mb_per_100k_extrapolated=round(per_tx * 100_000 / 1e6, 1),
        spec_bytes_per_tx=SPEC_PER_TX,
        spec_mb_per_100k=round(SPEC_PER_TX * 100_000 / 1e6, 1),
        ratio_to_spec=round(per_tx / SPEC_PER_TX, 2),
    )
    return path


def _hash_like(template: str | None, rng: random.Random) -> str | None:
    """A fresh hash in the template's alphabet and length (hex ``0x...`` or base58)."""
    if template is None:
        return None
    if template.startswith("0x"):
        return "0x" + "".join(rng.choices("0123456789abcdef", k=len(template) - 2))
    return "".join(rng.choices(B58, k=len(template)))


def db_growth_bulk(source: Path, bulk: int, workdir: Path) -> None:
    """Copy the real rows of ``source`` ``bulk`` times over with raw executemany."""
    path = workdir / "bulk.db"
    checkpointed_size(source)
    shutil.copyfile(source, path)
    conn = raw_connect(path)
    try:
        tx_cols = [r[1] for r in conn.execute("PRAGMA table_info(transactions)")]
        audit_cols = [r[1] for r in conn.execute("PRAGMA table_info(audit_log)") if r[1] != "id"]
        templates = conn.execute(
            f"SELECT {', '.join(tx_cols)} FROM transactions WHERE status = 'CONFIRMED' "
            "ORDER BY created_at, id"
        ).fetchall()
        audit_by_tx: dict[str, list[tuple[Any, ...]]] = {}
        for row in conn.execute(
            f"SELECT {', '.join(audit_cols)} FROM audit_log WHERE tx_id IS NOT NULL ORDER BY id"
        ):
            audit_by_tx.setdefault(row[audit_cols.index("tx_id")], []).append(row)
    finally:
        conn.close()
    size0 = checkpointed_size(path)
    stat0 = table_bytes(path)
    rng = random.Random(7)
    i_id, i_hash, i_created = (tx_cols.index(c) for c in ("id", "tx_hash", "created_at"))
    a_tx, a_time = audit_cols.index("tx_id"), audit_cols.index("timestamp")
    base_time = max(int(t[i_created]) for t in templates) + 1
    tx_sql = (
        f"INSERT INTO transactions ({', '.join(tx_cols)}) VALUES ({', '.join('?' * len(tx_cols))})"
    )
    audit_sql = (
        f"INSERT INTO audit_log ({', '.join(audit_cols)}) "
        f"VALUES ({', '.join('?' * len(audit_cols))})"
    )
    conn = raw_connect(path)
    start = time.perf_counter()
    audit_rows = 0
    try:
        chunk = 10_000
        for first in range(0, bulk, chunk):
            txs: list[tuple[Any, ...]] = []
            audits: list[tuple[Any, ...]] = []
            for i in range(first, min(bulk, first + chunk)):
                template = templates[i % len(templates)]
                row = list(template)
                row[i_id] = new_id()
                row[i_hash] = _hash_like(template[i_hash], rng)
                row[i_created] = base_time + i // 10  # 10 transactions per second
                txs.append(tuple(row))
                for audit in audit_by_tx.get(template[i_id], []):
                    copy = list(audit)
                    copy[a_tx] = row[i_id]
                    copy[a_time] = row[i_created]
                    audits.append(tuple(copy))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(tx_sql, txs)
            conn.executemany(audit_sql, audits)
            conn.execute("COMMIT")
            audit_rows += len(audits)
    finally:
        conn.close()
    seconds = time.perf_counter() - start
    size1 = checkpointed_size(path)
    stat1 = table_bytes(path)
    per_tx = (size1 - size0) / bulk
    emit(
        bench="pipeline",
        case="db_growth_bulk",
        transactions=bulk,
        audit_rows=audit_rows,
        audit_rows_per_tx=round(audit_rows / bulk, 2),
        templates=len(templates),
        insert_seconds=round(seconds, 1),
        file_bytes_before=size0,
        file_bytes_after=size1,
        bytes_per_tx=round(per_tx, 1),
        **split_per_tx(stat0, stat1, bulk),
        mb_per_100k=round(per_tx * 100_000 / 1e6, 1),
        spec_mb_per_100k=round(SPEC_PER_TX * 100_000 / 1e6, 1),
        ratio_to_spec=round(per_tx / SPEC_PER_TX, 2),
    )


# --------------------------------------------------------------------------- window size


def fill_window(path: Path, agent_id: str, rows: int, now: int) -> None:
    """Copy the agent's first confirmed row ``rows`` times (fresh ids and hashes, spends of
    about 1,000 lamports) with ``created_at`` spread over the last 6.9 days, so every one is
    inside the 7-day window.

    Raw ``executemany`` with the wallet closed; the database's triggers keep the usage
    buckets as they would for rows the wallet wrote (no audit rows: they are hash-chained).
    """
    rng = random.Random(rows)
    conn = raw_connect(path)
    try:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(transactions)")]
        template = conn.execute(
            f"SELECT {', '.join(cols)} FROM transactions WHERE agent_id = ? "
            "AND status = 'CONFIRMED' ORDER BY created_at, id LIMIT 1",
            (agent_id,),
        ).fetchone()
        i_id, i_hash, i_created = (cols.index(c) for c in ("id", "tx_hash", "created_at"))
        i_spend = cols.index("spend")
        span = int(6.9 * 86_400)
        batch = []
        for i in range(rows):
            row = list(template)
            row[i_id] = new_id()
            row[i_hash] = _hash_like(template[i_hash], rng)
            row[i_created] = now - 60 - (i * span) // rows
            # small amounts: the 24 h total stays under the INSTANT velocity threshold
            row[i_spend] = json.dumps({"native": str(1_000 + i % 1_000)})
            batch.append(tuple(row))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO transactions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            batch,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def window(sizes: list[int], sends: int, rounds: int, workdir: Path) -> None:
    """``wallet.send`` p50 (and its admission stage) with ``sizes`` rows in the agent's 7-day
    window: usage from the buckets (what ``send`` does) against the row-by-row computation it
    replaced (``_scan_usage``), alternating in blocks in the same run."""
    import waiaas.services.policies as policies

    buckets = policies._bucket_usage
    results: dict[int, dict[str, float]] = {}
    for size in sizes:
        directory = workdir / f"window-{size}"
        directory.mkdir()
        adapter = SolanaAdapter.local()
        stamps = StageStamps()
        with open_wallet(directory, [adapter], PipelineHooks(on_stage=stamps)) as wallet:
            agent_id, token, recipients = provision(wallet, adapter, "window")
            send_one(wallet, token, recipients, "solana", 0)
        fill_window(directory / "wallet.db", agent_id, size - 1, int(time.time()))
        samples: dict[str, dict[str, list[float]]] = {
            mode: {"send": [], "admission": []} for mode in ("buckets", "rows")
        }
        anomalies = 0
        with open_wallet(directory, [adapter], PipelineHooks(on_stage=stamps)) as wallet:
            i = 1
            for _ in range(3):  # warm up (the first keyed commit seals the buckets)
                send_one(wallet, token, recipients, "solana", i)
                i += 1
            for r in range(rounds):
                order = ("buckets", "rows") if r % 2 == 0 else ("rows", "buckets")
                for mode in order:
                    policies._bucket_usage = buckets if mode == "buckets" else policies._scan_usage  # type: ignore[assignment]
                    try:
                        for _ in range(sends):
                            stamps.marks.clear()
                            start = time.perf_counter()
                            try:
                                send_one(wallet, token, recipients, "solana", i)
                            except RuntimeError:  # not confirmed in time: no sample
                                anomalies += 1
                                continue
                            finally:
                                i += 1
                            end = time.perf_counter()
                            samples[mode]["send"].append((end - start) * 1000)
                            samples[mode]["admission"].append(
                                (stamps.marks["admitted"] - start) * 1000
                            )
                    finally:
                        policies._bucket_usage = buckets  # type: ignore[assignment]
        adapter.close()
        results[size] = {}
        for mode in ("buckets", "rows"):
            send_p50 = statistics.median(samples[mode]["send"])
            admission_p50 = statistics.median(samples[mode]["admission"])
            results[size][mode] = send_p50
            emit(
                bench="pipeline",
                case="window",
                usage=mode,
                rows_in_window=size,
                sends=len(samples[mode]["send"]),
                send_p50_ms=round(send_p50, 3),
                send_p99_ms=round(percentile(samples[mode]["send"], 99), 3),
                admission_p50_ms=round(admission_p50, 3),
                not_confirmed=anomalies,
            )
    small, large = min(sizes), max(sizes)
    for mode in ("buckets", "rows"):
        emit(
            bench="pipeline",
            case="window_ratio",
            usage=mode,
            baseline=mode == "rows",
            rows=f"{large} / {small}",
            send_p50_ratio=round(results[large][mode] / results[small][mode], 3),
        )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per throughput figure")
    parser.add_argument("--solana-txs", type=int, default=300)
    parser.add_argument("--evm-txs", type=int, default=60)
    parser.add_argument("--stage-txs", type=int, default=600)
    parser.add_argument("--growth-window", type=int, default=100)
    parser.add_argument("--db-txs", type=int, default=2_000)
    parser.add_argument("--bulk", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--window-sizes", default="100,10000,50000")
    parser.add_argument("--window-sends", type=int, default=15, help="sends per block")
    parser.add_argument("--window-rounds", type=int, default=4, help="blocks per usage mode")
    parser.add_argument(
        "--only",
        choices=["plan_cost", "window", "throughput", "statements", "db_growth"],
        default=None,
        help="run one case",
    )
    parser.add_argument("--dir", type=Path, default=None, help="keep the files here")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.solana_txs, args.evm_txs = 1, 30, 10
        args.stage_txs, args.growth_window, args.db_txs, args.bulk = 40, 10, 100, 2_000
        args.window_sizes, args.window_sends, args.window_rounds = "100,2000", 5, 2
    started = time.perf_counter()
    emit(
        bench="environment",
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    with tempfile.TemporaryDirectory(prefix="waiaas-bench-pipeline-") as tmp:
        workdir = args.dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.only == "plan_cost":
            plan_cost("solana", args.solana_txs, args.runs, workdir)
            plan_cost("evm", args.evm_txs, args.runs, workdir)
            emit(bench="pipeline", case="total", seconds=round(time.perf_counter() - started, 1))
            return
        if args.only in ("throughput", "statements"):
            if args.only == "throughput":
                throughput("solana", args.solana_txs, args.runs, workdir)
                throughput("evm", args.evm_txs, args.runs, workdir)
            statements(workdir)
            emit(bench="pipeline", case="total", seconds=round(time.perf_counter() - started, 1))
            return
        if args.only == "db_growth":
            db_growth(args.db_txs, workdir)
            emit(bench="pipeline", case="total", seconds=round(time.perf_counter() - started, 1))
            return
        sizes = [int(x) for x in args.window_sizes.split(",")]
        if args.only == "window":
            window(sizes, args.window_sends, args.window_rounds, workdir)
            emit(bench="pipeline", case="total", seconds=round(time.perf_counter() - started, 1))
            return
        throughput("solana", args.solana_txs, args.runs, workdir)
        throughput("evm", args.evm_txs, args.runs, workdir)
        plan_cost("solana", args.solana_txs, args.runs, workdir)
        plan_cost("evm", args.evm_txs, args.runs, workdir)
        statements(workdir)
        stages(args.stage_txs, args.growth_window, workdir)
        source = db_growth(args.db_txs, workdir)
        db_growth_bulk(source, args.bulk, workdir)
        window(sizes, args.window_sends, args.window_rounds, workdir)
    emit(bench="pipeline", case="total", seconds=round(time.perf_counter() - started, 1))


if __name__ == "__main__":
    main()
