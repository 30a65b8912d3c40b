"""Two processes share one wallet file: write units of work never overshoot or lose updates."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import waiaas
from tests.support.rawdb import raw_connect
from waiaas.db import Database
from waiaas.db.tables import AgentRow

AMOUNT = 10**20  # wei-sized: sums exceed SQLite's 64-bit integers
LIMIT = 150 * AMOUNT
ATTEMPTS = 120  # per process; together they try 240 times for 150 slots

WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tests.support.pg_redirect import install_from_env
    from waiaas.db import Database
    from waiaas.db.tables import TransactionRow
    from waiaas.ids import new_id

    path, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    amount, limit, attempts = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    install_from_env()  # --backend=postgresql: the same schema as the test
    db = Database.open(path)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    inserted = 0
    for _ in range(attempts):
        with db.write() as uow:
            # read-then-write decision: spent so far (exact ints) + counter
            spent = sum(int(t.amount) for t in uow.transactions.since("agent", 0))
            counter = uow.state.get("counter") or 0
            uow.state.put("counter", counter + 1, now=int(time.time()))
            if spent + amount <= limit:
                uow.transactions.add(TransactionRow(
                    id=new_id(), agent_id="agent", chain="evm", type="TRANSFER",
                    amount=str(amount), status="PENDING", created_at=int(time.time()),
                    metadata_json=name,
                ))
                inserted += 1
            uow.commit()
    db.close()
    print("inserted", inserted, flush=True)
    """
)


def test_two_processes_never_overshoot_a_limit(tmp_path: Path) -> None:
    """Two processes making read-then-write decisions stop exactly at LIMIT; none lost."""
    path = tmp_path / "wallet.db"
    go = tmp_path / "go"
    db = Database.open(path)
    with db.write() as uow:
        uow.agents.add(
            AgentRow(
                id="agent",
                name="shared",
                chain="evm",
                network="sepolia",
                public_key="0xpk",
                status="ACTIVE",
                created_at=1,
                updated_at=1,
            )
        )
        uow.commit()
    db.close()

    src = str(Path(waiaas.__file__).resolve().parent.parent)
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, root, os.environ.get("PYTHONPATH", "")]),
    }
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(path),
                str(go),
                name,
                str(AMOUNT),
                str(LIMIT),
                str(ATTEMPTS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("p1", "p2")
    ]
    for w in workers:  # both are connected before either starts
        assert w.stdout is not None
        assert w.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [w.communicate(timeout=120) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    inserted = [int(out.split()[-1]) for out, _ in outputs]

    with raw_connect(path) as conn:
        amounts = [int(a) for (a,) in conn.all("SELECT amount FROM transactions")]
        by_process = dict(conn.all("SELECT metadata, count(*) FROM transactions GROUP BY metadata"))
        (counter,) = conn.one("SELECT value FROM wallet_state WHERE key = 'counter'") or (None,)
    assert sum(amounts) == LIMIT  # exactly at the limit, never over
    assert len(amounts) == sum(inserted) == LIMIT // AMOUNT
    assert by_process == {"p1": inserted[0], "p2": inserted[1]}
    assert int(counter) == 2 * ATTEMPTS  # no read-modify-write was lost
    assert all(n > 0 for n in inserted)  # one alone can insert at most ATTEMPTS < 150
