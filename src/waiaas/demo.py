"""``python -m waiaas demo``: the whole product on the in-process chains, in about a minute.

It creates a wallet in a temporary directory with a Solana agent (LiteSVM) and an EVM agent
(eth-tester), sets an owner and policies, issues sessions, runs an INSTANT, a NOTIFY, a DELAY
(short cooldown) and an APPROVAL transaction (the owner signs), a denied one, and the kill
switch; then prints each transaction's path and the audit trail.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from waiaas.chains.base import LocalChainControl
from waiaas.errors import KillSwitchActiveError, PolicyDeniedError
from waiaas.types import AgentInfo, TokenTransfer, Transfer

if TYPE_CHECKING:
    from waiaas.wallet import Wallet

__all__ = ["run_demo"]

SOL = 10**9
ETH = 10**18


def _short(text: str | None, keep: int = 8) -> str:
    if not text:
        return "-"
    return text if len(text) <= 2 * keep + 1 else f"{text[:keep]}…{text[-4:]}"


def _human(amount: int | None, chain: str, asset: str | None) -> str:
    if amount is None:
        return "-"
    if asset not in (None, "native"):
        return f"{amount} units"
    from waiaas.chains.families import native_asset_for

    coin = native_asset_for(chain)
    if coin is None:
        return f"{amount} base units"
    unit, decimals = coin.symbol, coin.decimals
    whole, frac = divmod(amount, 10**decimals)
    digits = f"{frac:0{decimals}d}".rstrip("0")
    return f"{whole}.{digits} {unit}" if digits else f"{whole} {unit}"


@dataclass
class _Demo:
    """The demo's wallet, its output and the transactions it made (in order)."""

    wallet: Wallet
    say: Callable[..., None]
    delay_seconds: int
    ids: list[str] = field(default_factory=list)

    def attempt(self, label: str, action: Callable[[], Any]) -> None:
        """Send one request; print where it went (a denial included)."""
        try:
            result = action()
            self.ids.append(result.id)
            self.say(f"  {label:<34} -> {result.status} ({result.tier})")
        except PolicyDeniedError as exc:
            if exc.tx_id:
                self.ids.append(exc.tx_id)
            self.say(f"  {label:<34} -> DENIED: {exc.reasons[0]['message']}")


def run_demo(out: TextIO = sys.stdout, *, delay_seconds: int = 2) -> int:
    """Run the demo, printing to ``out``; return 0 on success."""
    from eth_account import Account
    from nacl.signing import SigningKey

    from waiaas.config import KdfLimits, WalletConfig
    from waiaas.keystore.keys import b58encode
    from waiaas.testing import local_chains
    from waiaas.wallet import Wallet

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="waiaas-demo-") as tmp:
        path = Path(tmp) / "demo-wallet.db"
        say(f"waiaas demo: wallet at {path}")
        config = WalletConfig(
            kdf=KdfLimits.interactive(), delay_seconds=delay_seconds, confirm_timeout=10.0
        )
        with Wallet.open(
            path,
            password="demo-password",  # noqa: S106 - a throwaway demo wallet
            chains=local_chains(),
            config=config,
        ) as wallet:
            demo = _Demo(wallet, say, delay_seconds)
            sol_owner, evm_owner, sol, evm = _agents(demo)
            sol_token, evm_token = _policies_and_sessions(demo, sol, evm)
            sol_dest = b58encode(bytes(SigningKey.generate().verify_key))
            evm_dest = Account.create().address
            _solana(demo, sol_token, sol_dest, sol_owner)
            _evm(demo, evm, evm_token, evm_dest, evm_owner)
            _kill_switch(demo, sol_token, sol_dest)
            _report(demo, sol)
    say(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0


def _agents(demo: _Demo) -> tuple[Any, Any, AgentInfo, AgentInfo]:
    """The owners (a Solana wallet, ed25519; an EVM wallet, secp256k1) and their funded
    agents."""
    from eth_account import Account
    from nacl.signing import SigningKey

    from waiaas.keystore.keys import b58encode
    from waiaas.testing import fund

    wallet, say = demo.wallet, demo.say
    # owners: a Solana wallet (ed25519) and an EVM wallet (secp256k1)
    sol_owner = SigningKey.generate()
    sol_owner_address = b58encode(bytes(sol_owner.verify_key))
    evm_owner = Account.create()

    sol = wallet.create_agent("sol-trader", "solana", owner_address=sol_owner_address)
    evm = wallet.create_agent("evm-payer", "evm", owner_address=evm_owner.address)
    say(
        f"agents: {sol.name} {sol.public_key} (solana/{sol.network}), "
        f"{evm.name} {evm.public_key} (evm/{evm.network})"
    )
    fund(wallet, sol.id, 20 * SOL)
    fund(wallet, evm.id, 20 * ETH)
    return sol_owner, evm_owner, sol, evm


def _policies_and_sessions(demo: _Demo, sol: AgentInfo, evm: AgentInfo) -> tuple[str, str]:
    """Spending limits per agent, a rate limit for all; one session per agent (tokens)."""
    wallet, delay_seconds = demo.wallet, demo.delay_seconds
    wallet.add_policy(
        "SPENDING_LIMIT",
        {
            "per_transaction": str(5 * SOL),
            "daily_total": str(15 * SOL),
            "instant_max": str(SOL // 10),
            "notify_max": str(SOL // 2),
            "delay_max": str(SOL),
            "delay_seconds": delay_seconds,
            "approval_timeout": 600,
        },
        agent_id=sol.id,
    )
    wallet.add_policy(
        "SPENDING_LIMIT",
        {
            "per_transaction": str(5 * ETH),
            "instant_max": str(ETH // 100),
            "notify_max": str(ETH // 10),
            "delay_max": str(ETH // 2),
            "delay_seconds": delay_seconds,
            "approval_timeout": 600,
        },
        agent_id=evm.id,
    )
    wallet.add_policy("RATE_LIMIT", {"max_requests": 100, "window_seconds": 60})
    sol_token = wallet.issue_session(sol.id).token
    evm_token = wallet.issue_session(evm.id).token
    demo.say("policies set; sessions issued\n")
    return sol_token, evm_token


def _solana(demo: _Demo, token: str, dest: str, owner: Any) -> None:
    """Every tier on Solana, a denial, the owner's ed25519 approval, the DELAY cooldown."""
    from waiaas.keystore.keys import b58encode

    wallet, say, ids, attempt = demo.wallet, demo.say, demo.ids, demo.attempt
    say("Solana agent:")
    attempt(
        "0.05 SOL (INSTANT)",
        lambda: wallet.send(token, Transfer(to=dest, amount=SOL // 20)),
    )
    attempt(
        "0.3 SOL (NOTIFY)",
        lambda: wallet.send(token, Transfer(to=dest, amount=3 * SOL // 10)),
    )
    attempt(
        "0.8 SOL (DELAY)",
        lambda: wallet.send(token, Transfer(to=dest, amount=8 * SOL // 10)),
    )
    delayed = ids[-1]
    attempt(
        "2 SOL (APPROVAL)",
        lambda: wallet.send(token, Transfer(to=dest, amount=2 * SOL)),
    )
    approval_id = ids[-1]
    attempt(
        "10 SOL (over per-transaction cap)",
        lambda: wallet.send(token, Transfer(to=dest, amount=10 * SOL)),
    )

    message = wallet.approval_message(approval_id)
    signature = b58encode(owner.sign(message.encode()).signature)
    approved = wallet.approve(approval_id, signature)
    say(f"  owner signed the approval (ed25519)  -> {approved.status}")
    say(f"  waiting {demo.delay_seconds} s for the DELAY cooldown …")
    time.sleep(demo.delay_seconds + 1)
    wallet.process_due()
    say(f"  after the cooldown                   -> {wallet.get_transaction(delayed).status}")


def _evm(demo: _Demo, evm: AgentInfo, token: str, dest: str, owner: Any) -> None:
    """Tiers on EVM, the owner's SIWE approval, an ERC-20 transfer of a fresh test token."""
    from eth_account.messages import encode_defunct

    wallet, say, ids, attempt = demo.wallet, demo.say, demo.ids, demo.attempt
    say("\nEVM agent:")
    attempt(
        "0.005 ETH (INSTANT)",
        lambda: wallet.send(token, Transfer(to=dest, amount=ETH // 200)),
    )
    attempt(
        "0.05 ETH (NOTIFY)",
        lambda: wallet.send(token, Transfer(to=dest, amount=ETH // 20)),
    )
    attempt(
        "1 ETH (APPROVAL)",
        lambda: wallet.send(token, Transfer(to=dest, amount=ETH)),
    )
    evm_approval = ids[-1]
    siwe = wallet.approval_message(evm_approval)
    sig = owner.sign_message(encode_defunct(text=siwe)).signature.hex()
    done = wallet.approve(evm_approval, "0x" + sig.removeprefix("0x"))
    say(f"  owner signed the approval (SIWE)     -> {done.status}")
    adapter = wallet.chain_adapter(evm.id)
    assert isinstance(adapter, LocalChainControl)  # the demo runs on local chains
    token_address = adapter.create_test_token(decimals=6)
    adapter.mint_test_token(token_address, evm.public_key, 1_000_000_000)
    attempt(
        "ERC-20 token transfer (no token policy)",
        lambda: wallet.send(token, TokenTransfer(token=token_address, to=dest, amount=250_000_000)),
    )


def _kill_switch(demo: _Demo, token: str, dest: str) -> None:
    """The kill switch: everything stops, a new request is refused; then released."""
    wallet, say = demo.wallet, demo.say
    say("\nKill switch:")
    summary = wallet.kill_switch("demo: owner pressed the button")
    say(
        f"  activated: {summary.agents_suspended} agents suspended, "
        f"{summary.sessions_revoked} sessions revoked"
    )
    try:
        wallet.send(token, Transfer(to=dest, amount=1))
    except KillSwitchActiveError as exc:
        say(f"  a new request is refused: {exc.code}")
    wallet.release_kill_switch(resume_agents=True)
    say("  released; agents resumed")


def _report(demo: _Demo, sol: AgentInfo) -> None:
    """Each transaction's path through the pipeline, the audit trail, a balance."""
    wallet, say = demo.wallet, demo.say
    say("\nTransactions (path through the pipeline):")
    say(f"  {'id':<14} {'chain':<7} {'amount':<14} {'tier':<9} {'status':<10} path")
    for tx_id in demo.ids:
        tx = wallet.get_transaction(tx_id)
        steps = [
            e.event_type.removeprefix("TX_").lower()
            for e in reversed(wallet.audit(tx_id=tx_id, limit=50).entries)
        ]
        say(
            f"  …{tx.id[-12:]:<13} {tx.chain:<7} "
            f"{_human(tx.amount, tx.chain, tx.asset):<14} "
            f"{(tx.tier or '-'):<9} {tx.status:<10} {' > '.join(steps)}"
        )
        if tx.tx_hash:
            say(f"  {'':<14} hash {_short(tx.tx_hash, 10)}")

    say("\nAudit trail (newest first, last 25):")
    for entry in wallet.audit(limit=25).entries:
        who = entry.actor if len(entry.actor) < 20 else _short(entry.actor, 10)
        say(
            f"  #{entry.id:<4} {entry.severity:<8} {entry.event_type:<22} {who:<22} "
            f"{_short(entry.tx_id or entry.agent_id, 6)}"
        )
    balance = wallet.balance(sol.id)
    say(f"\nSolana agent balance now {_human(balance, 'solana', None)}")
