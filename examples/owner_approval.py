"""Owner approval: large transactions wait for the owner's own wallet signature.

Run it with ``python examples/owner_approval.py``. It runs on in-process chains (eth-tester
for EVM, LiteSVM for Solana) in a temporary directory.

An agent's owner is a person with an ordinary wallet. When a request lands in the APPROVAL
tier, the pipeline queues it and produces a message naming exactly that transaction (id,
agent, chain, network, type, recipient, amount, tier, a nonce and an expiry). The owner
signs it with their wallet; ``wallet.approve`` verifies the signature and then executes.

What it shows, in order:

1. an EVM agent whose owner holds an EVM key (``eth_account``): a 1 ETH request waits,
   the owner reads ``wallet.approval_message(tx_id)`` - an EIP-4361 (SIWE) message -,
   signs it with EIP-191 ``personal_sign``, and ``wallet.approve`` executes it;
2. a rejection: the owner signs the *reject* message and the transaction is cancelled;
3. replays refused: the first approval's signature used again on its own transaction and
   on another one, and a signature by someone else (``ApprovalError`` with a ``reason``;
   each refusal leaves an ``AUTH_FAILED`` audit row);
4. a Solana agent whose owner holds an ed25519 key (``nacl``) approving the same way.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from nacl.signing import SigningKey
from solders.pubkey import Pubkey
from solders.signature import Signature

from waiaas import ApprovalError, Transfer, Wallet
from waiaas.chains.evm import EvmAdapter
from waiaas.chains.solana import SolanaAdapter
from waiaas.testing import fast_config, fund

ETH = 10**18  # wei
SOL = 10**9  # lamports


def evm_sign(account: LocalAccount, message: str) -> str:
    """What an EVM wallet's ``personal_sign`` returns: EIP-191 over the text, 0x-hex."""
    signed = account.sign_message(encode_defunct(text=message))
    return "0x" + bytes(signed.signature).hex()


def utc(timestamp: int | None) -> str:
    """Unix seconds as an ISO time, UTC."""
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


def main() -> None:
    evm_chain = EvmAdapter.local()
    sol_chain = SolanaAdapter.local()
    with (
        tempfile.TemporaryDirectory(prefix="waiaas-approval-") as tmp,
        Wallet.open(
            Path(tmp) / "wallet.db",
            password="correct horse battery staple",
            chains=[evm_chain, sol_chain],
            config=fast_config(),  # cheap key derivation for the example only
        ) as wallet,
    ):
        # ------------------------------------------------------------------ 1. EVM owner
        print("== 1. an EVM owner approves ==")
        owner = Account.create()  # the owner's own wallet: its key never enters waiaas
        agent = wallet.create_agent("evm-payer", "evm", owner_address=owner.address)
        fund(wallet, agent.id, 10 * ETH)
        # Up to 0.01 ETH INSTANT, 0.1 NOTIFY, 0.5 DELAY; above: APPROVAL, valid 10 minutes.
        wallet.add_policy(
            "SPENDING_LIMIT",
            {
                "instant_max": str(ETH // 100),
                "notify_max": str(ETH // 10),
                "delay_max": str(ETH // 2),
                "approval_timeout": 600,
            },
            agent_id=agent.id,
        )
        token = wallet.issue_session(agent.id).token
        vendor = evm_chain.generate_secret()[1]  # someone to pay

        queued = wallet.send(token, Transfer(to=vendor, amount=ETH))
        print(
            f"1 ETH request: {queued.status} ({queued.tier}), waits for the owner until "
            f"{utc(queued.approval_expires_at)}"
        )
        message = wallet.approval_message(queued.id)
        print("the owner is shown this message:")
        print("    " + message.replace("\n", "\n    "))
        first_signature = evm_sign(owner, message)
        approved = wallet.approve(queued.id, first_signature)
        print(f"owner signed -> {approved.status}, tx hash {approved.tx_hash}")
        print(f"vendor balance: {evm_chain.get_balance(vendor)} wei")

        # ------------------------------------------------------------------ 2. rejection
        print("\n== 2. the owner rejects ==")
        second = wallet.send(token, Transfer(to=vendor, amount=3 * ETH // 4))
        reject_text = wallet.approval_message(second.id, "reject")
        rejected = wallet.reject(second.id, evm_sign(owner, reject_text))
        print(
            f"0.75 ETH request: owner signed the reject message -> {rejected.status} "
            f"({rejected.error})"
        )

        # ------------------------------------------------------------------ 3. replays
        print("\n== 3. signatures that must not work ==")
        third = wallet.send(token, Transfer(to=vendor, amount=2 * ETH))
        attempts = [
            ("the first signature again, on its own transaction", queued.id, first_signature),
            ("the first signature, on another transaction", third.id, first_signature),
            (
                "a signature of the right message by someone else",
                third.id,
                evm_sign(Account.create(), wallet.approval_message(third.id)),
            ),
        ]
        for label, tx_id, signature in attempts:
            try:
                wallet.approve(tx_id, signature)
                print(f"  {label}: accepted (unexpected!)")
            except ApprovalError as exc:
                print(f"  {label}: refused ({exc.reason})")
        refusals = wallet.audit(agent_id=agent.id, event_types=["AUTH_FAILED"]).entries
        print(f"  AUTH_FAILED audit rows for this agent: {len(refusals)}")
        print(f"  the 2 ETH request is still {wallet.get_transaction(third.id).status}")
        done = wallet.approve(third.id, evm_sign(owner, wallet.approval_message(third.id)))
        print(f"  the owner's own signature -> {done.status}")

        # ------------------------------------------------------------------ 4. Solana owner
        print("\n== 4. a Solana owner approves (ed25519) ==")
        sol_owner = SigningKey.generate()  # e.g. the owner's Phantom or Solflare key
        sol_owner_address = str(Pubkey.from_bytes(bytes(sol_owner.verify_key)))  # base58
        sol_agent = wallet.create_agent("sol-payer", "solana", owner_address=sol_owner_address)
        fund(wallet, sol_agent.id, 20 * SOL)
        wallet.add_policy(
            "SPENDING_LIMIT",
            {"instant_max": str(SOL // 10), "delay_max": str(SOL), "approval_timeout": 600},
            agent_id=sol_agent.id,
        )
        sol_token = wallet.issue_session(sol_agent.id).token
        sol_vendor = sol_chain.generate_secret()[1]
        pending = wallet.send(sol_token, Transfer(to=sol_vendor, amount=5 * SOL))
        print(f"5 SOL request: {pending.status} ({pending.tier})")
        text = wallet.approval_message(pending.id)
        print(f"the owner signs the UTF-8 bytes of a {len(text.splitlines())}-line message")
        # A Solana wallet's signMessage: ed25519 over the bytes; base58 (or 0x-hex) accepted.
        signature = str(Signature.from_bytes(sol_owner.sign(text.encode("utf-8")).signature))
        confirmed = wallet.approve(pending.id, signature)
        print(f"owner signed -> {confirmed.status}, tx hash {confirmed.tx_hash}")
        print(f"vendor balance: {sol_chain.get_balance(sol_vendor)} lamports")

        print("\npath of each transaction through the pipeline:")
        for tx_id in (queued.id, second.id, third.id, pending.id):
            tx = wallet.get_transaction(tx_id)
            steps = [e.event_type for e in reversed(wallet.audit(tx_id=tx_id).entries)]
            print(f"  {tx.chain:<6} {tx.status:<9} {' > '.join(steps)}")
    print("owner approval finished")


if __name__ == "__main__":
    main()
