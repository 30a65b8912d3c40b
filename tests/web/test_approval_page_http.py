"""The approval app over real HTTP (uvicorn on a local port, httpx): security headers on
every response, one answer for every bad link, and a decision endpoint that refuses what a
cross-site page, a guesser or a malformed client sends."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import EvmOwner, SolanaOwner
from tests.web.conftest import Served
from waiaas.errors import InvalidInputError
from waiaas.web import approvals_app
from waiaas.web._app import CSP


def test_every_response_carries_the_security_headers(served: Served) -> None:
    owner = EvmOwner()
    tx_id, _ = served.queue("evm", owner)
    link = served.link(tx_id)
    origin = served.base_url
    for url in (link, f"{origin}/static/approve.js", f"{origin}/nope", f"{origin}/a/b/c"):
        response = httpx.get(url)
        assert response.headers["content-security-policy"] == CSP, url
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "no-store" in httpx.get(link).headers["cache-control"]
    page = httpx.get(link).text
    assert "<script>" not in page and 'src="../static/approve.js"' in page
    assert "http" not in page.split("<body>")[1].replace(served.base_url, "")  # no external URL


def test_bad_links_get_one_answer(served: Served) -> None:
    """A wrong token, an unknown transaction and a non-APPROVAL transaction all read the
    same, so a guesser learns nothing; the token of one transaction opens no other."""
    owner = EvmOwner()
    tx_a, _ = served.queue("evm", owner, name="a")
    tx_b, _ = served.queue("evm", owner, name="b")
    token_a = served.link(tx_a).rsplit("/", 1)[1]
    urls = [
        f"{served.base_url}/{tx_b}/{token_a}",
        f"{served.base_url}/{tx_a}/{token_a[:-1]}B",
        f"{served.base_url}/01a24a00-0000-7000-8000-000000000000/{token_a}",
        f"{served.base_url}/{tx_a}/{token_a}extra",
        f"{served.base_url}/{tx_a}/%00",
    ]
    bodies = set()
    for url in urls:
        response = httpx.get(url)
        assert response.status_code == 404, url
        bodies.add(response.text)
        post = httpx.post(url, json={"action": "approve", "signature": "0x00"})
        assert post.status_code == 404
    assert len(bodies) == 1


def test_links_differ_per_transaction_and_die_with_the_approval(served: Served) -> None:
    owner = SolanaOwner()
    tx_id, _ = served.queue("solana", owner)
    link = served.link(tx_id)
    assert httpx.get(link).status_code == 200
    served.wallet.reject(tx_id, owner.sign(served.wallet.approval_message(tx_id, "reject")))
    response = httpx.get(link)
    assert response.status_code == 410
    assert "rejected by the owner" in response.text and 'id="approve"' not in response.text


@pytest.mark.parametrize(
    "kwargs,status,error",
    [
        ({"json": {"action": "approve"}}, 400, "a signature is required"),
        ({"json": {"action": "steal", "signature": "0x00"}}, 400, "action must be"),
        ({"json": ["approve"]}, 400, "JSON object"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        ({"data": {"action": "approve", "signature": "0x00"}}, 415, "as JSON"),
        (
            {
                "json": {"action": "approve", "signature": "0x00"},
                "headers": {"origin": "https://evil.example"},
            },
            403,
            "another site",
        ),
        ({"json": {"action": "approve", "signature": "x" * 9000}}, 413, "too large"),
        ({"json": {"action": "approve", "signature": "0x1234"}}, 400, "could not be read"),
    ],
)
def test_the_decision_endpoint_refuses_bad_requests(
    served: Served, kwargs: dict[str, object], status: int, error: str
) -> None:
    owner = EvmOwner()
    tx_id, _ = served.queue("evm", owner)
    response = httpx.post(served.link(tx_id), **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    assert error in response.json()["error"]
    assert served.wallet.get_transaction(tx_id).status == "QUEUED"


def test_a_signature_without_0x_approves_over_http(served: Served) -> None:
    """What eth-account's ``signature.hex()`` prints (no 0x, hexbytes 2) is accepted."""
    owner = EvmOwner()
    tx_id, _ = served.queue("evm", owner)
    signature = owner.sign(served.wallet.approval_message(tx_id))[2:]
    origin = served.base_url.rsplit("/approvals", 1)[0]
    response = httpx.post(
        served.link(tx_id),
        json={"action": "approve", "signature": signature},
        headers={"origin": origin},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "CONFIRMED"


def test_static_files_are_only_the_shipped_ones(served: Served) -> None:
    assert httpx.get(f"{served.base_url}/static/approve.css").status_code == 200
    js = httpx.get(f"{served.base_url}/static/approve.js")
    assert js.headers["content-type"].startswith("text/javascript")
    for name in ("..%2F__init__.py", "_app.py", "approve.js.map"):
        assert httpx.get(f"{served.base_url}/static/{name}").status_code == 404


def test_approvals_app_needs_a_wallet() -> None:
    with pytest.raises(InvalidInputError):
        approvals_app(object())  # type: ignore[arg-type]


def test_a_locked_wallet_says_so(served: Served) -> None:
    """While the keystore is locked the page cannot check links: it says so (503), and
    nothing is decided."""
    from waiaas.testing import TEST_PASSWORD

    owner = EvmOwner()
    tx_id, _ = served.queue("evm", owner)
    link = served.link(tx_id)
    served.wallet.lock()
    try:
        page = httpx.get(link)
        assert page.status_code == 503 and "The wallet is locked" in page.text
        post = httpx.post(link, json={"action": "approve", "signature": "0x00"})
        assert post.status_code == 503
    finally:
        served.wallet.unlock(TEST_PASSWORD)
    assert httpx.get(link).status_code == 200
    assert served.wallet.get_transaction(tx_id).status == "QUEUED"
