"""The owner's approval page in real headless Chromium: an injected EIP-1193 provider, a
Phantom-style provider and a Wallet Standard wallet, each asking a local test signer that
holds the owner's key. The owner opens the link, reads every effect, signs, and the
transaction executes on eth-tester / LiteSVM; reject works; stale links, replayed signatures
and wrong signers are refused on the page in words a person can read."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import EvmOwner, SolanaOwner
from tests.web.conftest import ARTIFACTS, Served
from tests.web.injected_wallets import (
    evm_provider,
    inject,
    phantom_provider,
    serve_one_signature,
    standard_wallet,
)

Signer = Callable[[str, bytes], str]


def evm_signer(owner: EvmOwner) -> Signer:
    from eth_account.messages import encode_defunct

    def sign(kind: str, message: bytes) -> str:
        assert kind == "evm"
        return (
            "0x"
            + bytes(owner.account.sign_message(encode_defunct(primitive=message)).signature).hex()
        )

    return sign


def solana_signer(owner: SolanaOwner) -> Signer:
    def sign(kind: str, message: bytes) -> str:
        assert kind == "solana"
        return "0x" + owner.key.sign(message).signature.hex()

    return sign


def _open(browser: Any, script: str, url: str) -> None:
    # A fresh tab per test: injected scripts apply to the documents of that tab only.
    browser.switch_to.new_window("tab")
    inject(browser, script)
    browser.get(url)


def _text(browser: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.ID, element_id).text)


def _click(browser: Any, element_id: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, element_id).click()


def _outcome(browser: Any) -> tuple[str, str]:
    """Wait for the page to finish (status class ok/error); (class, text)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d: Any) -> Any:
        el = d.find_element(By.ID, "status")
        cls = el.get_attribute("class")
        return (cls, el.text) if cls in ("ok", "error") else False

    result: tuple[str, str] = WebDriverWait(browser, 60).until(done)
    return result


def _screenshot(browser: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / name))


def _csp_violations(browser: Any) -> list[str]:
    return [
        e["message"]
        for e in browser.get_log("browser")
        if "Content Security Policy" in e["message"] or "Refused to" in e["message"]
    ]


def test_evm_owner_reads_the_effects_signs_and_the_transfer_executes(
    served: Served, browser: Any
) -> None:
    """MetaMask-style provider: the page shows 2 ETH to the full recipient address, the
    tier, agent, why, the ISO expiry; personal_sign gets exactly the approval message; the
    transfer is CONFIRMED on eth-tester and the recipient holds 2 ETH."""
    owner = EvmOwner()
    tx_id, dest = served.queue("evm", owner)
    _open(browser, evm_provider([owner.address.lower()]), served.link(tx_id))
    assert _text(browser, "summary").startswith("Agent trader (")
    effects = _text(browser, "effects")
    assert f" to {dest}" in effects and "send 2 ETH from " in effects
    # the network fee, in ETH, labelled as the most it can cost
    fee = served.wallet.transaction_display(tx_id).network_fee
    assert fee is not None and fee.maximum
    shown_fee = _text(browser, "fee")
    assert shown_fee.startswith(f"Network fee: at most {fee.amount} (gas limit 21000 times ")
    assert shown_fee.endswith(" gwei, priced when requested)") and " ETH " in shown_fee
    facts = _text(browser, "facts")
    assert "APPROVAL" in facts and owner.address in facts and tx_id in facts
    assert "2023-11-14T23:13:20Z" in facts
    assert "default evm thresholds" in _text(browser, "reasons")
    inline = browser.execute_script("return document.querySelectorAll('script:not([src])').length")
    assert inline == 0
    _screenshot(browser, "approval-page-evm.png")
    _click(browser, "approve")
    signed = serve_one_signature(browser, evm_signer(owner))
    assert signed.decode() == served.wallet.approval_message(tx_id)
    cls, text = _outcome(browser)
    assert cls == "ok", text
    assert text.startswith("Approved. The transaction is CONFIRMED (hash 0x")
    _screenshot(browser, "approval-page-evm-approved.png")
    tx = served.wallet.get_transaction(tx_id)
    assert tx.status == "CONFIRMED" and tx.tx_hash and tx.tx_hash in text
    adapter = served.wallet.network_adapter("evm", "local")
    assert adapter.get_balance(dest) == 2 * 10**18
    assert _csp_violations(browser) == []


def test_solana_owner_rejects_with_a_phantom_style_wallet(served: Served, browser: Any) -> None:
    """Phantom-style provider: Reject signs the reject message; the transaction is
    CANCELLED and nothing moves."""
    owner = SolanaOwner()
    tx_id, dest = served.queue("solana", owner)
    _open(browser, phantom_provider(owner.address), served.link(tx_id))
    assert f" to {dest}" in _text(browser, "effects")
    assert "send 11 SOL from " in _text(browser, "effects")
    assert _text(browser, "fee") == "Network fee: 0.000005 SOL"  # what the message pays
    _click(browser, "reject")
    signed = serve_one_signature(browser, solana_signer(owner))
    assert signed.decode() == served.wallet.approval_message(tx_id, "reject")
    cls, text = _outcome(browser)
    assert (cls, text) == ("ok", "Rejected. The transaction will not execute.")
    _screenshot(browser, "approval-page-solana-rejected.png")
    assert served.wallet.get_transaction(tx_id).status == "CANCELLED"
    assert served.wallet.network_adapter("solana", "localnet").get_balance(dest) == 0


def test_solana_owner_approves_with_a_wallet_standard_wallet(served: Served, browser: Any) -> None:
    """A Wallet Standard wallet (solana:signMessage) is found and used; the SOL transfer
    executes on LiteSVM."""
    owner = SolanaOwner()
    tx_id, dest = served.queue("solana", owner)
    _open(browser, standard_wallet(owner.address), served.link(tx_id))
    _click(browser, "approve")
    serve_one_signature(browser, solana_signer(owner))
    cls, text = _outcome(browser)
    assert cls == "ok", text
    assert served.wallet.get_transaction(tx_id).status == "CONFIRMED"
    assert served.wallet.network_adapter("solana", "localnet").get_balance(dest) == 11 * 10**9


def test_a_stale_link_is_refused_on_the_page(served: Served, browser: Any) -> None:
    """After the approval window closes the page says so and offers nothing to sign; a
    link whose token was altered reads as not valid."""
    owner = EvmOwner()
    tx_id, _ = served.queue("evm", owner)
    link = served.link(tx_id)
    served.clock.advance(3600)
    _open(browser, evm_provider([owner.address]), link)
    assert _text(browser, "status") == (
        "This approval expired at 2023-11-14T23:13:20Z; the transaction will not execute."
    )
    assert browser.execute_script("return document.getElementById('approve')") is None
    _screenshot(browser, "approval-page-expired.png")
    _open(browser, evm_provider([owner.address]), link[:-4] + "AAAA")
    assert _text(browser, "status") == (
        "This approval link is not valid. Check that you copied the whole link."
    )


def test_an_expired_approval_is_refused_when_signed_late(served: Served, browser: Any) -> None:
    """The page was opened in time but signed after the expiry: refused, and the
    transaction is EXPIRED."""
    owner = EvmOwner()
    tx_id, _ = served.queue("evm", owner)
    _open(browser, evm_provider([owner.address]), served.link(tx_id))
    _click(browser, "approve")
    served.clock.advance(3601)
    serve_one_signature(browser, evm_signer(owner))
    cls, text = _outcome(browser)
    assert cls == "error"
    assert (
        text == "This approval expired at 2023-11-14T23:13:20Z; the transaction will not execute."
    )
    assert served.wallet.get_transaction(tx_id).status == "EXPIRED"


def test_a_replayed_signature_is_refused(served: Served, browser: Any) -> None:
    """The owner's signature for one transaction, replayed on the page of another, is
    refused; and a page left open after the approval was decided elsewhere refuses the
    second use of a signature."""
    owner = EvmOwner()
    first, _ = served.queue("evm", owner, name="a")
    second, _ = served.queue("evm", owner, name="b")
    captured = evm_signer(owner)("evm", served.wallet.approval_message(first).encode())
    served.wallet.approve(first, captured)
    _open(browser, evm_provider([owner.address]), served.link(second))
    _click(browser, "approve")
    serve_one_signature(browser, lambda kind, message: captured)
    cls, text = _outcome(browser)
    assert cls == "error"
    assert text.startswith("The signature does not match this approval")
    assert served.wallet.get_transaction(second).status == "QUEUED"

    third, _ = served.queue("evm", owner, name="c")
    _open(browser, evm_provider([owner.address]), served.link(third))
    signature = evm_signer(owner)("evm", served.wallet.approval_message(third).encode())
    served.wallet.approve(third, signature)  # decided elsewhere while the page is open
    _click(browser, "approve")
    serve_one_signature(browser, lambda kind, message: signature)
    cls, text = _outcome(browser)
    assert cls == "error"
    assert text.startswith("This approval was already decided: the transaction is CONFIRMED")


def test_a_wrong_signer_is_refused(served: Served, browser: Any) -> None:
    """A wallet connected to another account is stopped before signing; a wallet that
    claims the owner's account but signs with another key is refused by the server."""
    owner, other = EvmOwner(), EvmOwner()
    tx_id, _ = served.queue("evm", owner)
    link = served.link(tx_id)
    _open(browser, evm_provider([other.address]), link)
    _click(browser, "approve")
    cls, text = _outcome(browser)
    assert cls == "error"
    assert text == (
        f"The connected account {other.address} is not the owner {owner.address}. "
        "Switch your wallet to the owner account and try again."
    )
    _open(browser, evm_provider([owner.address]), link)
    _click(browser, "approve")
    serve_one_signature(browser, evm_signer(other))
    cls, text = _outcome(browser)
    assert cls == "error"
    assert owner.address in text and text.startswith("The signature does not match")
    _screenshot(browser, "approval-page-wrong-signer.png")
    assert served.wallet.get_transaction(tx_id).status == "QUEUED"


@pytest.mark.parametrize("declined", ["evm"])
def test_declining_in_the_wallet_says_nothing_was_signed(
    served: Served, browser: Any, declined: str
) -> None:
    """The owner presses Cancel in their wallet (EIP-1193 error 4001)."""
    owner = EvmOwner()
    tx_id, _ = served.queue("evm", owner)
    _open(browser, evm_provider([owner.address]), served.link(tx_id))
    _click(browser, "approve")
    import time

    for _ in range(200):
        if browser.execute_script("return (window.__waiaasSignQueue || []).length"):
            break
        time.sleep(0.05)
    browser.execute_script(
        "window.__waiaasSignQueue.shift().reject({code: 4001, message: 'User rejected'});"
    )
    cls, text = _outcome(browser)
    assert (cls, text) == ("error", "You declined the request in your wallet; nothing was signed.")
    assert served.wallet.get_transaction(tx_id).status == "QUEUED"


def test_agent_controlled_text_cannot_script_the_page(served: Served, browser: Any) -> None:
    """A memo written by the agent is shown as text: markup in it neither renders nor runs
    (escaping, and the CSP would refuse an inline handler anyway)."""
    from tests.e2e.conftest import new_agent, recipient
    from waiaas import Transfer

    owner = SolanaOwner()
    agent = new_agent(served.wallet, "solana", owner=owner, name="<b>bold</b>")
    token = served.wallet.issue_session(agent.id).token
    memo = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
    result = served.wallet.send(
        token, Transfer(to=recipient("solana"), amount=11 * 10**9, memo=memo)
    )
    _open(browser, phantom_provider(owner.address), served.link(result.id))
    assert json.dumps(memo) in _text(browser, "effects")  # quoted: it can forge nothing
    assert "<b>bold</b>" in _text(browser, "summary")
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.execute_script("return document.images.length") == 0
