"""A user's script written from the documentation, type-checked by ``test_typing.py`` with
``mypy --strict`` and *no* plugins (users do not configure the pydantic plugin)."""

from __future__ import annotations

import json
import tempfile
from decimal import Decimal

from waiaas import (
    Approve,
    Batch,
    ContractCall,
    Decision,
    Explanation,
    KillSwitchRelease,
    KillSwitchSummary,
    PolicyDeniedError,
    SessionConstraints,
    Tier,
    TierThresholds,
    TokenTransfer,
    TransactionInfo,
    Transfer,
    TxStatus,
    Wallet,
    WalletConfig,
)
from waiaas.chains.base import ChainAdapter, LocalChainControl
from waiaas.chains.solana import SolanaAdapter
from waiaas.policy import PolicySpec, ReplayResult
from waiaas.testing import fund, local_wallet


def main() -> None:
    # The documented constructors: amounts as strings or ints, lists where tuples are stored.
    transfer = Transfer(to="9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin", amount="5")
    token = TokenTransfer(token="0x" + "ab" * 20, to="0x" + "cd" * 20, amount=250, decimals=6)
    approve = Approve(token="0x" + "ab" * 20, spender="0x" + "cd" * 20, amount="1000")
    call = ContractCall(to="0x" + "ef" * 20, data="0xa9059cbb", value="0")
    batch = Batch(requests=[transfer, Transfer(to=transfer.to, amount=7)])
    constraints = SessionConstraints(
        allowed_networks=["localnet"],
        allowed_tx_types=["TRANSFER"],
        max_amount_per_tx=10**9,
        max_total_amount={"native": "5000000000"},
        allowed_addresses=[transfer.to],
        max_tx_count=10,
    )
    thresholds = TierThresholds(instant_max="100", notify_max=1000, delay_max="10000")
    config = WalletConfig(tier_defaults={"solana": thresholds}, min_password_length=12)
    amount: int = transfer.amount
    print(token.amount, approve.amount, call.selector, len(batch.requests), config, amount)

    with tempfile.TemporaryDirectory() as tmp:
        with Wallet.open(
            f"{tmp}/agents.db",
            password="correct horse battery staple",
            chains=[SolanaAdapter.local()],
        ) as wallet:
            agent = wallet.create_agent("trader", "solana")
            issued = wallet.issue_session(agent.id, ttl=600, constraints=constraints)
            try:
                result = wallet.send(issued.token, transfer)
                status: TxStatus = result.status
                tier: Tier | None = result.tier
                print(status, tier)
            except PolicyDeniedError as exc:
                decision: Decision | None = exc.decision
                print(exc.reasons, decision)
            txs: list[TransactionInfo] = wallet.list_transactions(agent_id=agent.id)
            print(len(txs))

        wallet2 = local_wallet(tmp, name="other.db")
        bot = wallet2.create_agent("bot", "solana")
        fund(wallet2, bot.id, 10**10)
        preview: Explanation = wallet2.dry_run(transfer, agent_id=bot.id)
        print(json.dumps(preview.to_dict()))
        spec = PolicySpec(
            id="p1", agent_id=None, type="SPENDING_LIMIT", rules={"per_transaction": "1"}
        )
        result2: ReplayResult = wallet2.policies.replay(bot.id, [spec])
        print(result2.compared, result2.flips())
        left: dict[str, int] = wallet2.budget_usage(bot.id).remaining()
        print(left, Decimal(1))
        adapter: ChainAdapter = wallet2.chain_adapter(bot.id)
        if isinstance(adapter, LocalChainControl):
            adapter.fund(bot.public_key, 10**9)
        stopped: KillSwitchSummary = wallet2.kill_switch("end of the script")
        suspended: int = stopped.agents_suspended
        print(suspended, json.dumps(stopped.to_dict()))
        released: KillSwitchRelease = wallet2.release_kill_switch(resume_agents=True)
        print(released.agents_resumed, released.resumed_ids)
        wallet2.close()


if __name__ == "__main__":
    main()
