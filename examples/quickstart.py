"""Quickstart: one Solana agent, one spending limit, one session, one transfer.

Run it with ``python examples/quickstart.py``. Everything happens in a temporary directory,
on an in-process Solana runtime (LiteSVM): no node, no network, no real money.

What it shows, in order:

1. open a wallet (a SQLite file plus an encrypted keystore beside it);
2. create a Solana agent: its key is generated and sealed in the keystore, and the agent
   itself never sees it;
3. fund the agent on the local chain;
4. set a spending limit with tier thresholds;
5. issue a session token: the only thing the agent ever holds;
6. send a transfer with the token and read the result and the policy decision;
7. list the audit trail the transfer left behind.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from waiaas import PolicyDeniedError, Transfer, Wallet
from waiaas.chains.solana import SolanaAdapter
from waiaas.testing import fast_config, fund

SOL = 10**9  # amounts are always integers of base units: 1 SOL = 10**9 lamports


def sol(lamports: int) -> str:
    """Lamports as a SOL figure for people, exactly (no floats near money)."""
    whole, frac = divmod(lamports, SOL)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") + " SOL"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="waiaas-quickstart-") as tmp:
        # One adapter per network the wallet may use. `SolanaAdapter.local()` is a fresh
        # in-process LiteSVM runtime; for a real cluster you would pass
        # `SolanaAdapter.rpc(url, network="devnet")` instead.
        chain = SolanaAdapter.local()

        # 1. Open (or create) the wallet. The password unlocks the keystore; in production
        #    it usually comes from WAIAAS_MASTER_PASSWORD or the OS keyring instead.
        #    `fast_config()` lowers the key-derivation cost so the example starts at once;
        #    keep the default WalletConfig() for real funds.
        path = Path(tmp) / "agents.db"
        with Wallet.open(
            path, password="correct horse battery staple", chains=[chain], config=fast_config()
        ) as wallet:
            print(f"wallet opened at {path.name}")

            # 2. An agent is a name, a chain, and a key the agent never sees.
            agent = wallet.create_agent("trader", "solana")
            print(f"agent {agent.name!r} created: {agent.status}, address {agent.public_key}")

            # 3. Give it 2 SOL on the local chain (a test-chain faucet, not for real networks).
            fund(wallet, agent.id, 2 * SOL)
            print(f"funded: balance {sol(wallet.balance(agent.id))}")

            # 4. A spending limit: at most 0.5 SOL per transaction and 1 SOL per rolling day.
            #    Up to 0.1 SOL is INSTANT; up to 0.25 SOL NOTIFY (executes, owner is told);
            #    up to 0.5 SOL DELAY (a cancellable cooldown); above that, APPROVAL.
            #    Amounts in policies are strings of base units, so wei never overflows.
            limit = wallet.add_policy(
                "SPENDING_LIMIT",
                {
                    "per_transaction": str(SOL // 2),
                    "daily_total": str(SOL),
                    "instant_max": str(SOL // 10),
                    "notify_max": str(SOL // 4),
                    "delay_max": str(SOL // 2),
                },
                agent_id=agent.id,
            )
            print(f"policy {limit.type} added (id {limit.id})")

            # 5. A session token for the agent, valid for an hour. Only its hash is stored;
            #    printing `session` shows token='***'.
            session = wallet.issue_session(agent.id, ttl=3600)
            print(f"session issued: {session!r}")
            token = session.token  # <- this string is what you hand to the agent

            # 6. The agent sends 0.05 SOL. INSTANT: signed, submitted and confirmed now.
            recipient = chain.generate_secret()[1]  # a fresh address to pay
            result = wallet.send(token, Transfer(to=recipient, amount=SOL // 20))
            print(f"transfer {result.id}: {result.status} ({result.tier})")
            print(f"  tx hash   {result.tx_hash}")
            print(f"  fee       {result.fee} lamports")
            # The agent's result carries the verdict only; the owner reads the full decision
            # (every reason, the budgets checked) by id.
            decision = wallet.get_transaction(result.id).decision
            assert decision is not None
            print(f"  decision  {decision.summary()}")
            for figure in decision.budget:
                print(
                    f"  budget    {figure.window}: requested {figure.requested}, "
                    f"limit {figure.limit}, remaining before it {figure.remaining}"
                )
            print(f"recipient balance: {sol(chain.get_balance(recipient))}")

            # A request above the per-transaction cap is refused, and recorded as such. The
            # agent learns what decides it (the rule, one figure, what to do next); the owner
            # reads every rule that refused it (deny-wins: all rules are evaluated).
            try:
                wallet.send(token, Transfer(to=recipient, amount=SOL))
            except PolicyDeniedError as exc:
                print(f"1 SOL transfer denied (recorded as {exc.tx_id}): {exc.message}")
                owner_view = wallet.get_transaction(exc.tx_id).decision
                assert owner_view is not None
                for reason in owner_view.deny_reasons:
                    print(f"  - [{reason.type}] {reason.message}")

            # 7. The audit trail: append-only, newest first. Every state change wrote one
            #    row in the same database transaction as the change itself.
            print("audit trail (oldest first):")
            for entry in reversed(wallet.audit(agent_id=agent.id, limit=50).entries):
                print(f"  #{entry.id:<3} {entry.severity:<8} {entry.event_type:<18} {entry.actor}")

            print("transactions:")
            for tx in wallet.list_transactions(agent_id=agent.id):
                print(f"  {tx.id}  {tx.amount:>12} lamports  {tx.status}")
    print("quickstart finished")


if __name__ == "__main__":
    main()
