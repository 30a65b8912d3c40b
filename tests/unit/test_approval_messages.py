"""Approval messages as owners' wallets see them: configurable SIWE/SIWS domain and URI,
ISO times, and signatures in every form wallets and libraries print them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from waiaas.config import WalletConfig
from waiaas.errors import ApprovalError
from waiaas.keystore.keys import b58encode
from waiaas.pipeline.approvals import (
    ApprovalRequest,
    build_message,
    iso_time,
    parse_signature,
    verify_signature,
)

EVM_OWNER = "0x" + "ab" * 20
SOL_OWNER = b58encode(bytes(range(32)))


def _req(owner: str, **kw: object) -> ApprovalRequest:
    values: dict[str, object] = dict(
        tx_id="tx-1",
        approval_id="0192-ab",
        agent_id="agent-1",
        agent_name="trader",
        chain="evm",
        network="local",
        tx_type="TRANSFER",
        to="0x" + "cd" * 20,
        amount="1000",
        asset="native",
        tier="APPROVAL",
        owner_address=owner,
        issued_at=1_700_000_000,
        expires_at=1_700_003_600,
    )
    values.update(kw)
    return ApprovalRequest(**values)  # type: ignore[arg-type]


def test_defaults_keep_the_historic_domain_and_uri() -> None:
    cfg = WalletConfig()
    assert (cfg.siwe_domain(), cfg.siwe_uri()) == ("waiaas.local", "waiaas://approval")


def test_approvals_url_sets_domain_and_uri() -> None:
    cfg = WalletConfig(approvals_url="https://wallet.example.com:8443/approvals/")
    assert cfg.approvals_url == "https://wallet.example.com:8443/approvals"
    assert cfg.siwe_domain() == "wallet.example.com:8443"
    assert cfg.siwe_uri() == "https://wallet.example.com:8443/approvals"


def test_explicit_domain_and_uri_win() -> None:
    cfg = WalletConfig(
        approvals_url="https://a.example/x",
        approval_domain="b.example",
        approval_uri="https://b.example/y",
    )
    assert (cfg.siwe_domain(), cfg.siwe_uri()) == ("b.example", "https://b.example/y")


@pytest.mark.parametrize(
    "field,value",
    [
        ("approvals_url", "javascript:alert(1)"),
        ("approvals_url", "ftp://example.com/x"),
        ("approvals_url", "https://user:pw@example.com/x"),
        ("approvals_url", "https://example.com/x?next=evil"),
        ("approvals_url", "https://example.com/x#frag"),
        ("approvals_url", "https://example.com/a b"),
        ("approval_domain", "evil.example\nwants you"),
        ("approval_domain", "a.example/path"),
        ("approval_domain", ""),
        ("approval_uri", "no scheme"),
        ("approval_uri", "https://x.example/\n"),
    ],
)
def test_bad_urls_and_domains_are_refused(field: str, value: str) -> None:
    """A domain or URI that could forge another line of the signed message is refused."""
    with pytest.raises(ValidationError):
        WalletConfig(**{field: value})


def test_message_uses_the_request_domain_uri_and_iso_times() -> None:
    text = build_message(_req(EVM_OWNER, domain="wallet.example.com", uri="https://w/a"), "reject")
    assert text.startswith("wallet.example.com wants you to sign in with your Ethereum account:")
    assert "URI: https://w/a/reject/tx-1" in text
    assert "Issued At: 2023-11-14T22:13:20Z" in text
    assert "Expiration Time: 2023-11-14T23:13:20Z" in text
    assert iso_time(0) == "1970-01-01T00:00:00Z"


def test_evm_signatures_with_or_without_0x() -> None:
    raw = bytes(range(65))
    assert parse_signature("0x" + raw.hex(), EVM_OWNER) == raw
    assert parse_signature(raw.hex(), EVM_OWNER) == raw
    assert parse_signature("0X" + raw.hex().upper(), EVM_OWNER) == raw
    assert parse_signature("  " + raw.hex() + "\n", EVM_OWNER) == raw


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "0x",
        "0x" + "00" * 64,
        "00" * 66,
        b58encode(bytes(65)),
        "zz" * 65,
        "0x" + "g" * 130,
    ],
)
def test_evm_refuses_other_forms(bad: str) -> None:
    """Base58, a wrong length, or non-hex is malformed for an EVM owner (never a crash)."""
    with pytest.raises(ApprovalError) as info:
        parse_signature(bad, EVM_OWNER, tx_id="t")
    assert info.value.reason == "malformed"


def test_solana_signatures_in_base58_and_hex() -> None:
    raw = bytes(range(1, 65))
    assert parse_signature(b58encode(raw), SOL_OWNER) == raw
    assert parse_signature(raw.hex(), SOL_OWNER) == raw
    assert parse_signature("0x" + raw.hex(), SOL_OWNER) == raw


@pytest.mark.parametrize("bad", [object(), 12, None, "0x" + "00" * 63, "0OIl", "x" * 2000])
def test_solana_refuses_garbage(bad: object) -> None:
    with pytest.raises(ApprovalError) as info:
        parse_signature(bad, SOL_OWNER)
    assert info.value.reason == "malformed"


def test_verify_accepts_every_form_of_a_real_signature() -> None:
    """A real personal_sign signature verifies with and without 0x; a Solana signature
    verifies as base58 and as hex."""
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from nacl.signing import SigningKey

    acct = Account.create()
    text = build_message(_req(str(acct.address)), "approve")
    sig = bytes(acct.sign_message(encode_defunct(text=text)).signature)
    for form in ("0x" + sig.hex(), sig.hex()):
        verify_signature(text, form, str(acct.address), tx_id="tx-1")
    key = SigningKey.generate()
    owner = b58encode(bytes(key.verify_key))
    text = build_message(_req(owner, chain="solana"), "approve")
    sol_sig = key.sign(text.encode()).signature
    for form in (b58encode(sol_sig), sol_sig.hex(), "0x" + sol_sig.hex()):
        verify_signature(text, form, owner, tx_id="tx-1")
    with pytest.raises(ApprovalError) as info:
        verify_signature(text + " ", b58encode(sol_sig), owner, tx_id="tx-1")
    assert info.value.reason == "wrong_signer"
