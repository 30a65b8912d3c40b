"""A child process for crash and multi-process tests (run as ``python wallet_child.py JSON``).

It opens the same wallet file as the test (or the PostgreSQL URL ``spec["db"]`` names), on
chains that live outside it (anvil, and the LiteSVM-backed Solana JSON-RPC test server),
then either:

* ``mode=crash``: sends one request and SIGKILLs itself at pipeline stage ``stage``;
* ``mode=approve-crash``: the owner approves an APPROVAL-tier request, then it dies;
* ``mode=burst``: sends ``count`` requests from ``threads`` threads and prints a JSON summary;
* ``mode=send``: sends one request and prints its id and status;
* ``mode=recover``: runs ``process_due`` until transaction ``tx_id`` is final (or ``rounds``
  passes) and prints its status.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.pg_redirect import install_from_env
from waiaas import PolicyDeniedError, Transfer, Wallet
from waiaas.pipeline.engine import PipelineHooks
from waiaas.testing import TEST_PASSWORD, fast_config

install_from_env()  # --backend=postgresql: this process's wallet paths go to the same schemas


def chains(spec: dict[str, Any]) -> list[Any]:
    """RPC adapters on the test's out-of-process chains."""
    from waiaas.chains.evm.adapter import EvmDevAdapter
    from waiaas.chains.solana.adapter import LocalSolanaAdapter

    out: list[Any] = []
    if spec.get("solana_url"):
        out.append(LocalSolanaAdapter.rpc(spec["solana_url"], network="localnet"))
    if spec.get("evm_url"):
        out.append(EvmDevAdapter.rpc(spec["evm_url"], chain_id=spec["chain_id"], network="anvil"))
    return out


@contextlib.contextmanager
def open_wallet(spec: dict[str, Any], hooks: PipelineHooks | None = None) -> Iterator[Wallet]:
    """The test's wallet, as this process sees it; its RPC adapters are closed afterwards."""
    adapters = chains(spec)
    try:
        target = spec["db"]
        with Wallet.open(
            target if target.startswith("postgresql") else Path(target),
            password=TEST_PASSWORD,
            chains=adapters,
            config=fast_config(confirm_timeout=20.0),
            hooks=hooks,
        ) as wallet:
            yield wallet
    finally:
        for adapter in adapters:
            adapter.close()


#: Stages an INSTANT send passes only on the claim path (admission did not presign it).
CLAIM_STAGES = ("claimed", "signed")


def crash(spec: dict[str, Any]) -> None:
    def on_stage(name: str, tx_id: str) -> None:
        if name == spec["stage"]:
            sys.stdout.write(json.dumps({"tx_id": tx_id}) + "\n")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    with open_wallet(spec, PipelineHooks(on_stage=on_stage)) as wallet:
        # the claim path's stages ("claimed", "signed") exist only without presigning
        wallet._pipeline.presign = spec.get("presign", spec["stage"] not in CLAIM_STAGES)
        wallet.send(spec["token"], Transfer(to=spec["to"], amount=int(spec["amount"])))
    sys.stdout.write(json.dumps({"finished": True}) + "\n")


def approve_crash(spec: dict[str, Any]) -> None:
    """Send an APPROVAL-tier request, have the owner approve it, die right after approval."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    def on_stage(name: str, tx_id: str) -> None:
        if name == "approved":
            sys.stdout.write(json.dumps({"tx_id": tx_id}) + "\n")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    with open_wallet(spec, PipelineHooks(on_stage=on_stage)) as wallet:
        queued = wallet.send(spec["token"], Transfer(to=spec["to"], amount=int(spec["amount"])))
        owner = Account.from_key(bytes.fromhex(spec["owner_key"]))
        message = wallet.approval_message(queued.id)
        signature = owner.sign_message(encode_defunct(text=message)).signature.hex()
        wallet.approve(queued.id, "0x" + signature.removeprefix("0x"))
    sys.stdout.write(json.dumps({"finished": True}) + "\n")


def send_once(spec: dict[str, Any]) -> None:
    with open_wallet(spec) as wallet:
        res = wallet.send(spec["token"], Transfer(to=spec["to"], amount=int(spec["amount"])))
    sys.stdout.write(json.dumps({"id": res.id, "status": str(res.status)}) + "\n")


def burst(spec: dict[str, Any]) -> None:
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    per_thread = int(spec["count"]) // int(spec["threads"])

    def work() -> None:
        wallet = holder[0]
        for _ in range(per_thread):
            try:
                res = wallet.send(
                    spec["token"], Transfer(to=spec["to"], amount=int(spec["amount"]))
                )
                item = {"id": res.id, "status": str(res.status)}
            except PolicyDeniedError as exc:
                item = {"id": exc.tx_id, "status": "DENIED"}
            with lock:
                results.append(item)

    holder: list[Wallet] = []
    with open_wallet(spec) as wallet:
        holder.append(wallet)
        threads = [threading.Thread(target=work) for _ in range(int(spec["threads"]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    sys.stdout.write(json.dumps({"results": results}) + "\n")


def recover(spec: dict[str, Any]) -> None:
    with open_wallet(spec) as wallet:
        status = ""
        for _ in range(int(spec.get("rounds", 5))):
            wallet.process_due()
            status = str(wallet.get_transaction(spec["tx_id"]).status)
            if status in ("CONFIRMED", "FAILED", "CANCELLED", "EXPIRED"):
                break
    sys.stdout.write(json.dumps({"status": status}) + "\n")


if __name__ == "__main__":
    payload = json.loads(sys.argv[1])
    modes = {
        "crash": crash,
        "burst": burst,
        "approve-crash": approve_crash,
        "send": send_once,
        "recover": recover,
    }
    modes[payload["mode"]](payload)
