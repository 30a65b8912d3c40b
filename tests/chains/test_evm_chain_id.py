"""The chain id is ours to check: on connect, sign and submit, before any node sees a byte."""

from __future__ import annotations

import math
from typing import Any

import pytest
from evm_fixtures import EvmEnv, web3_for

from waiaas.chains.evm import ChainIdMismatchError, EvmAdapter, map_evm_error
from waiaas.errors import InvalidInputError, PermanentChainError, TransientChainError

pytestmark = pytest.mark.anvil


def _foreign_raw(
    secret: bytes, *, chain_id: int | None, nonce: int = 0, legacy: bool = False
) -> bytes:
    """A transfer signed with eth-account directly, for ``chain_id`` (None: pre-EIP-155)."""
    from eth_account import Account

    tx: dict[str, Any] = {"nonce": nonce, "to": "0x" + "42" * 20, "value": 1, "gas": 21_000}
    if legacy:
        tx["gasPrice"] = 3 * 10**9
    else:
        tx.update(type=2, maxFeePerGas=3 * 10**9, maxPriorityFeePerGas=10**9)
    if chain_id is not None:
        tx["chainId"] = chain_id
    return bytes(Account.sign_transaction(tx, secret).raw_transaction)


def _rpc_error(exc: BaseException) -> dict[str, Any]:
    """The JSON-RPC error object a ``Web3RPCError`` carries."""
    response: Any = getattr(exc, "rpc_response", None)
    error: dict[str, Any] = response["error"]
    return error


def _signed(raw: bytes) -> Any:
    from eth_hash.auto import keccak

    from waiaas.chains.base import SignedTx

    return SignedTx(chain="evm", raw=raw, tx_hash="0x" + keccak(raw).hex(), nonce=0)


def test_connect_refuses_another_chain(anvil_env: EvmEnv) -> None:
    """rpc()/anvil() ask the node for its chain id (on first use) and refuse a mismatch
    before any other call."""
    assert anvil_env.node is not None
    url = anvil_env.node.url
    with pytest.raises(ChainIdMismatchError) as info:
        EvmAdapter.rpc(url, chain_id=1, network="mainnet").connect()
    assert (info.value.expected, info.value.found) == (1, anvil_env.node.chain_id)
    assert info.value.kind == "permanent"
    with pytest.raises(ChainIdMismatchError):
        EvmAdapter.anvil(url, chain_id=5).get_balance("0x" + "11" * 20)
    wrong = EvmAdapter.rpc(url, chain_id=1, network="mainnet")
    for _ in range(2):  # a refused check is asked again, never skipped
        with pytest.raises(ChainIdMismatchError):
            wrong.get_balance("0x" + "11" * 20)
    with EvmAdapter.rpc(url, chain_id=anvil_env.node.chain_id, network="anvil") as adapter:
        assert adapter.chain_id == anvil_env.node.chain_id


def test_wrong_chain_eip1559_refused_by_us_and_by_anvil(anvil_env: EvmEnv) -> None:
    """A type-2 tx signed for chain 1 is refused by submit before sending; anvil itself
    answers -32003 "invalid chain id for signer", which maps to ChainIdMismatchError too."""
    adapter = anvil_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    raw = _foreign_raw(secret, chain_id=1)

    with pytest.raises(ChainIdMismatchError) as ours:
        adapter.submit(_signed(raw))
    assert (ours.value.expected, ours.value.found) == (adapter.chain_id, 1)
    with pytest.raises(ChainIdMismatchError):
        adapter.get_status(_signed(raw))
    assert adapter.pending_nonce(sender) == 0  # the node never saw it

    from web3.exceptions import Web3RPCError

    with pytest.raises(Web3RPCError) as theirs:
        web3_for(adapter).eth.send_raw_transaction(raw)
    assert _rpc_error(theirs.value)["code"] == -32003
    assert "invalid chain id" in _rpc_error(theirs.value)["message"]
    mapped = map_evm_error(theirs.value)
    assert isinstance(mapped, ChainIdMismatchError)
    assert mapped.kind == "permanent"


def test_legacy_transactions_for_other_chains_are_refused(anvil_env: EvmEnv) -> None:
    """Legacy txs without a chain id (replayable anywhere) or for another chain are refused
    by submit; anvil would take both into its pool."""
    adapter = anvil_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    for raw, found in (
        (_foreign_raw(secret, chain_id=None, legacy=True), None),
        (_foreign_raw(secret, chain_id=1, legacy=True), 1),
    ):
        with pytest.raises(ChainIdMismatchError) as info:
            adapter.submit(_signed(raw))
        assert info.value.found == found
    assert adapter.pending_nonce(sender) == 0
    # A legacy tx for the right chain is accepted (it is ours to refuse only by chain id).
    accepted = _signed(_foreign_raw(secret, chain_id=adapter.chain_id, legacy=True))
    adapter.submit(accepted)
    assert adapter.wait_for_confirmation(accepted, timeout=10).state == "CONFIRMED"


def test_eth_tester_does_not_check_chain_ids_but_we_do(tester_env: EvmEnv) -> None:
    """eth-tester mines a tx signed for chain 1; the adapter refuses to send it."""
    adapter = tester_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    raw = _foreign_raw(secret, chain_id=1)
    with pytest.raises(ChainIdMismatchError):
        adapter.submit(_signed(raw))
    tx_hash = web3_for(adapter).eth.send_raw_transaction(raw)
    assert web3_for(adapter).eth.get_transaction_receipt(tx_hash)["status"] == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"url": "ftp://127.0.0.1:1", "chain_id": 1}, "url"),
        ({"url": "127.0.0.1:8545", "chain_id": 1}, "url"),
        ({"url": "http://127.0.0.1:1", "chain_id": 0}, "chain_id"),
        ({"url": "http://127.0.0.1:1", "chain_id": True}, "chain_id"),
        ({"url": "http://127.0.0.1:1", "chain_id": "1"}, "chain_id"),
        ({"url": "http://127.0.0.1:1", "chain_id": 1, "timeout": 0}, "timeout"),
        ({"url": "http://127.0.0.1:1", "chain_id": 1, "timeout": math.nan}, "timeout"),
        ({"url": "http://127.0.0.1:1", "chain_id": 1, "network": ""}, "network"),
        ({"url": "http://127.0.0.1:1", "chain_id": 1, "priority_fee": -1}, "priority_fee"),
    ],
)
def test_rpc_arguments_are_validated(kwargs: dict[str, Any], field: str) -> None:
    """Bad connection arguments are refused before any request."""
    with pytest.raises(InvalidInputError) as info:
        EvmAdapter.rpc(**kwargs)
    assert info.value.field == field


def test_unreachable_node_is_transient_and_url_is_redacted() -> None:
    """A refused connection is transient; the URL (which may hold an API key) is neither in
    the error nor in its cause chain."""
    with pytest.raises(TransientChainError) as info:
        EvmAdapter.rpc("http://127.0.0.1:1/v3/supersecret-key", chain_id=1, timeout=2).connect()
    assert "supersecret" not in repr(info.value.to_dict())
    assert info.value.__cause__ is None


def test_wrong_path_is_permanent_and_redacted(anvil_env: EvmEnv) -> None:
    """anvil answers 404 on another path: permanent, and the path does not leak."""
    assert anvil_env.node is not None
    with pytest.raises(PermanentChainError) as info:
        EvmAdapter.rpc(
            anvil_env.node.url + "/v3/supersecret-key", chain_id=31337, timeout=2
        ).connect()
    assert "404" in info.value.message
    assert "supersecret" not in repr(info.value.to_dict())
    assert info.value.__cause__ is None


def test_rpc_is_lazy_like_the_solana_adapter() -> None:
    """rpc() sends nothing: an unreachable node only fails on first use, and a wallet can be
    opened (and agents created) without waiting on it."""
    adapter = EvmAdapter.rpc("http://127.0.0.1:1", chain_id=1, timeout=2)
    with pytest.raises(TransientChainError):
        adapter.get_balance("0x" + "11" * 20)
    adapter.close()
