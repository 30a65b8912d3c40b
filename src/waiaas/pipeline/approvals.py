"""Owner approval messages and signature checks (SIWE for EVM owners, SIWS for Solana owners).

The engine builds one canonical message per (transaction, approval request, action). It names
the transaction (id, agent, chain, network, type, to, amount in human units, tier), every
effect of its plan and the plan's digest, the network fee of the transaction as built when it
was requested, carries a nonce (the approval request's id) and an expiry, and says whether it
approves or rejects. The owner signs
it with their wallet:

* EVM owner (``0x...``): an EIP-4361 (Sign-In with Ethereum) message, signed with EIP-191
  ``personal_sign``; verified by recovering the signer address.
* Solana owner (base58): the same fields in Sign-In-With-Solana form, signed with ed25519 over
  the UTF-8 bytes; verified against the owner's public key.

Signatures are accepted as hex with or without ``0x`` (65 bytes for EVM owners, 64 for Solana
owners) and, for Solana owners, as base58. The message's domain and URI come from
``WalletConfig.approval_domain`` / ``approval_uri`` (or ``approvals_url``), fixed into the
approval when it is created.

Because the message contains the transaction id, the nonce and the action, a signature is good
for exactly one decision on one transaction; the approval row is decided once (compare-and-
swap), so a replay is refused, and a signature after ``expires_at`` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from waiaas.errors import ApprovalError, InvalidInputError

__all__ = [
    "ApprovalRequest",
    "build_message",
    "iso_time",
    "owner_kind",
    "parse_signature",
    "validate_owner_address",
    "verify_signature",
]

DOMAIN = "waiaas.local"
URI = "waiaas://approval"

Action = Literal["approve", "reject"]


@dataclass(frozen=True)
class ApprovalRequest:
    """Everything the canonical approval message names."""

    tx_id: str
    approval_id: str
    agent_id: str
    agent_name: str
    chain: str
    network: str
    tx_type: str
    to: str | None
    amount: str | None
    asset: str
    tier: str
    owner_address: str
    issued_at: int
    expires_at: int
    chain_id: int | None = None
    domain: str = DOMAIN
    uri: str = URI
    # What will be signed: one human line per effect decoded from the plan, and its digest.
    effects: tuple[str, ...] = ()
    plan_digest: str | None = None
    # Human text fixed when the approval was created: the amount with its unit, and the
    # network fee of the transaction as built then (not part of the plan).
    amount_text: str | None = None
    fee_text: str | None = None


def owner_kind(address: str) -> Literal["evm", "solana"]:
    """Which wallet family an owner address belongs to.

    Raises:
        InvalidInputError: the address is neither an EVM address nor a Solana public key.
    """
    validate_owner_address(address)
    return "evm" if address.startswith("0x") else "solana"


def validate_owner_address(address: object) -> str:
    """Validate and normalise an owner address (EIP-55 for EVM, exact base58 for Solana).

    Raises:
        InvalidInputError: not a valid EVM address or Solana public key.
    """
    from waiaas.addresses import EVM, SOLANA, normalize_address

    if not isinstance(address, str) or not address.strip():
        raise InvalidInputError("owner address must be a non-empty string", field="owner_address")
    text = address.strip()
    chain = EVM if text[:2] in ("0x", "0X") else SOLANA
    return normalize_address(chain, text, field="owner_address")


def iso_time(ts: int) -> str:
    """Unix seconds as ISO 8601 UTC (``2026-12-06T05:00:00Z``), as approval messages show it."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_message(req: ApprovalRequest, action: Action) -> str:
    """The exact text the owner signs to ``approve`` or ``reject`` the transaction."""
    if action not in ("approve", "reject"):
        raise InvalidInputError("action must be 'approve' or 'reject'", field="action")
    family = "Ethereum" if owner_kind(req.owner_address) == "evm" else "Solana"
    verb = "Approve" if action == "approve" else "Reject"
    amount = req.amount_text or _amount(req)
    statement = (
        f"{verb} waiaas transaction {req.tx_id}: {req.tx_type} of {amount} "
        f"to {req.to or '-'} by agent {req.agent_name} ({req.agent_id}) "
        f"on {req.chain}/{req.network}, tier {req.tier}."
    )
    chain_id = str(req.chain_id) if req.chain_id is not None else f"{req.chain}:{req.network}"
    lines = [
        f"{req.domain} wants you to sign in with your {family} account:",
        req.owner_address,
        "",
        statement,
        "",
        *_plan_section(req),
        *([f"Network fee: {req.fee_text}", ""] if req.fee_text else []),
        f"URI: {req.uri}/{action}/{req.tx_id}",
        "Version: 1",
        f"Chain ID: {chain_id}",
        f"Nonce: {req.approval_id.replace('-', '')}",
        f"Issued At: {iso_time(req.issued_at)}",
        f"Expiration Time: {iso_time(req.expires_at)}",
        f"Request ID: {req.tx_id}",
        "Resources:",
        f"- waiaas:tx:{req.tx_id}",
        f"- waiaas:action:{action}",
        *([f"- waiaas:plan:{req.plan_digest}"] if req.plan_digest else []),
    ]
    return "\n".join(lines)


def _amount(req: ApprovalRequest) -> str:
    """The statement's amount: native amounts in the chain's unit (``2 ETH``), others in
    base units of their asset (their effect lines give them in human units)."""
    if req.amount is None:
        return "none"
    from waiaas.chains.families import native_asset_for
    from waiaas.plan.describe import format_units

    # the shipped families' units only: the message must read the same in every process,
    # with or without the chain's adapter
    unit = native_asset_for(req.chain)
    if req.asset == "native" and unit is not None and req.amount.isdigit():
        return f"{format_units(int(req.amount), unit.decimals)} {unit.symbol}"
    return f"{req.amount} base units of {req.asset}"


def _plan_section(req: ApprovalRequest) -> list[str]:
    """Every effect of the plan, numbered, in human units, and the plan's digest: the
    signature covers exactly this plan (execution refuses any other)."""
    if req.plan_digest is None:
        return []
    lines = [f"This transaction does exactly {len(req.effects)} thing(s):"]
    lines.extend(f"{n}. {text}" for n, text in enumerate(req.effects, start=1))
    lines.append(f"Plan digest: {req.plan_digest}")
    lines.append("")
    return lines


_HEX = frozenset("0123456789abcdefABCDEF")


def parse_signature(signature: object, owner_address: str, *, tx_id: str = "") -> bytes:
    """The raw bytes of an owner's signature as a wallet or a library prints it.

    Accepted: hex with or without ``0x`` (130 hex digits for an EVM owner, 128 for a Solana
    owner) and, for a Solana owner, base58 (what Phantom and ``solders`` print).

    Raises:
        ApprovalError: ``reason="malformed"``: not a string, or none of those forms.
    """
    if not isinstance(signature, str) or not signature.strip() or len(signature) > 1024:
        raise ApprovalError("signature must be a non-empty string", tx_id=tx_id, reason="malformed")
    text = signature.strip()
    evm = owner_kind(owner_address) == "evm"
    size = 65 if evm else 64
    body = text[2:] if text.startswith(("0x", "0X")) else text
    if len(body) == 2 * size and all(c in _HEX for c in body):
        return bytes.fromhex(body)
    if body is not text or evm:
        raise ApprovalError(
            f"signature must be {size} bytes of hex (with or without 0x)"
            + ("" if evm else " or base58"),
            tx_id=tx_id,
            reason="malformed",
        )
    from waiaas.keystore.keys import b58decode

    try:
        return b58decode(text)
    except (ValueError, InvalidInputError) as exc:
        raise ApprovalError(
            "signature must be base58 or hex (with or without 0x)", tx_id=tx_id, reason="malformed"
        ) from exc


def verify_signature(message: str, signature: str, owner_address: str, *, tx_id: str) -> None:
    """Check that ``owner_address`` signed ``message``.

    Raises:
        ApprovalError: malformed signature or a different signer (``reason`` says which).
    """
    sig = parse_signature(signature, owner_address, tx_id=tx_id)
    if owner_kind(owner_address) == "evm":
        from eth_account import Account
        from eth_account.messages import encode_defunct

        if len(sig) != 65:
            raise ApprovalError("an EVM signature has 65 bytes", tx_id=tx_id, reason="malformed")
        try:
            signer = Account.recover_message(encode_defunct(text=message), signature=sig)
        except Exception as exc:  # eth_keys raises several unrelated types for bad input
            raise ApprovalError(
                "signature does not recover to an address", tx_id=tx_id, reason="bad_signature"
            ) from exc
        if signer.lower() != owner_address.lower():
            raise ApprovalError(
                "signature was not made by the owner", tx_id=tx_id, reason="wrong_signer"
            )
        return
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    from waiaas.keystore.keys import b58decode

    if len(sig) != 64:
        raise ApprovalError("an ed25519 signature has 64 bytes", tx_id=tx_id, reason="malformed")
    try:
        VerifyKey(b58decode(owner_address)).verify(message.encode("utf-8"), sig)
    except BadSignatureError as exc:
        raise ApprovalError(
            "signature was not made by the owner", tx_id=tx_id, reason="wrong_signer"
        ) from exc
