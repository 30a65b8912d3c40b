"""The JSON-RPC backend: a Solana node over HTTP (one sync ``httpx.Client``, timeouts always set).

Methods used, with the request and response shapes of Solana's JSON-RPC API:
``getLatestBlockhash``, ``isBlockhashValid``, ``getAccountInfo`` (base64), ``getBalance``,
``getTokenAccountBalance``, ``getMinimumBalanceForRentExemption``, ``getFeeForMessage``,
``simulateTransaction``, ``sendTransaction`` (base64), ``getSignatureStatuses``,
``getTransaction`` and, on test clusters, ``requestAirdrop``.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from solders.hash import Hash
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from waiaas.chains.solana._backend import (
    AccountData,
    LatestBlockhash,
    SendResult,
    SimOutcome,
    TxRecord,
)
from waiaas.chains.solana.errors import (
    TxContext,
    is_already_processed,
    malformed_response,
    map_http_status,
    map_rpc_error,
    map_transaction_error,
    map_transport_error,
    redact_url,
)
from waiaas.errors import ChainError, ChainErrorKind, TransientChainError

_COMMITMENT_RANK = {"processed": 0, "confirmed": 1, "finalized": 2}


class _RpcErrorObject(Exception):
    """Internal: the node answered with a JSON-RPC ``error`` object."""

    def __init__(self, error: object) -> None:
        super().__init__("JSON-RPC error")
        self.error = error


class RpcBackend:
    """A backend talking JSON-RPC to one node.

    Args:
        url: the node's HTTP(S) endpoint (may carry an API key; it is never shown).
        timeout: seconds for connect, read, write and pool waits.
        commitment: ``processed``, ``confirmed`` or ``finalized``; what "final" means.
        airdrop_timeout: seconds :meth:`airdrop` waits for its transaction.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        commitment: str,
        airdrop_timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        self._url = url
        self._endpoint = redact_url(url)
        self._commitment = commitment
        self._airdrop_timeout = airdrop_timeout
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers={"Content-Type": "application/json"},
            follow_redirects=False,
        )
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"rpc {self._endpoint}"

    # ------------------------------------------------------------------ transport

    def _call_raw(self, method: str, params: list[Any]) -> Any:
        with self._id_lock:
            request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            response = self._client.post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, endpoint=self._url) from exc
        if response.status_code != 200:
            raise map_http_status(
                response.status_code,
                endpoint=self._url,
                retry_after=response.headers.get("retry-after"),
            )
        try:
            payload = response.json()
        except ValueError as exc:
            raise malformed_response(self._url, f"{method}: body is not JSON") from exc
        if not isinstance(payload, Mapping):
            raise malformed_response(self._url, f"{method}: body is not a JSON object")
        if payload.get("error") is not None:
            raise _RpcErrorObject(payload["error"])
        if "result" not in payload:
            raise malformed_response(self._url, f"{method}: no result and no error")
        return payload["result"]

    def _call(self, method: str, params: list[Any], context: TxContext | None = None) -> Any:
        try:
            return self._call_raw(method, params)
        except _RpcErrorObject as exc:
            raise map_rpc_error(exc.error, context=context) from None

    def _value(self, method: str, result: Any) -> Any:
        if not isinstance(result, Mapping) or "value" not in result:
            raise malformed_response(self._url, f"{method}: expected {{context, value}}")
        return result["value"]

    def _int(self, method: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise malformed_response(self._url, f"{method}: expected a non-negative integer")
        return value

    def _config(self, **extra: Any) -> dict[str, Any]:
        return {"commitment": self._commitment, **extra}

    # ------------------------------------------------------------------ reads

    def latest_blockhash(self) -> LatestBlockhash:
        result = self._call("getLatestBlockhash", [self._config()])
        value = self._value("getLatestBlockhash", result)
        try:
            blockhash = Hash.from_string(value["blockhash"])
            height = self._int("getLatestBlockhash", value["lastValidBlockHeight"])
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed_response(self._url, "getLatestBlockhash: bad value") from exc
        context = result.get("context") if isinstance(result, Mapping) else None
        slot = context.get("slot") if isinstance(context, Mapping) else None
        if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
            slot = None
        return LatestBlockhash(blockhash, height, slot)

    def history_floor(self) -> int | None:
        try:
            value = self._call("minimumLedgerSlot", [])
        except ChainError as exc:
            if exc.kind == ChainErrorKind.TRANSIENT:
                raise  # ask again later
            return None  # a node that cannot say (method not offered) proves nothing
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        return value

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        value = self._value(
            "isBlockhashValid",
            self._call("isBlockhashValid", [str(blockhash), self._config()]),
        )
        if not isinstance(value, bool):
            raise malformed_response(self._url, "isBlockhashValid: expected a bool")
        return value

    def get_account(self, pubkey: Pubkey) -> AccountData | None:
        value = self._value(
            "getAccountInfo",
            self._call("getAccountInfo", [str(pubkey), self._config(encoding="base64")]),
        )
        return self._account(value, "getAccountInfo")

    def get_accounts(self, pubkeys: Sequence[Pubkey]) -> list[AccountData | None]:
        out: list[AccountData | None] = []
        for start in range(0, len(pubkeys), 100):  # the node's limit per request
            chunk = [str(key) for key in pubkeys[start : start + 100]]
            value = self._value(
                "getMultipleAccounts",
                self._call("getMultipleAccounts", [chunk, self._config(encoding="base64")]),
            )
            if not isinstance(value, list) or len(value) != len(chunk):
                raise malformed_response(self._url, "getMultipleAccounts: bad value")
            out += [self._account(item, "getMultipleAccounts") for item in value]
        return out

    def simulate_accounts(
        self, tx: VersionedTransaction, pubkeys: Sequence[Pubkey], *, context: TxContext
    ) -> tuple[SimOutcome, list[AccountData | None] | None]:
        encoded = base64.b64encode(bytes(tx)).decode()
        config = self._config(
            encoding="base64",
            sigVerify=False,
            replaceRecentBlockhash=False,
            accounts={"encoding": "base64", "addresses": [str(key) for key in pubkeys]},
        )
        value = self._value(
            "simulateTransaction", self._call("simulateTransaction", [encoded, config], context)
        )
        if not isinstance(value, Mapping):
            raise malformed_response(self._url, "simulateTransaction: bad value")
        logs = value.get("logs") or ()
        units = value.get("unitsConsumed")
        outcome = SimOutcome(
            err=value.get("err"),
            logs=tuple(str(line) for line in logs),
            units_consumed=units if isinstance(units, int) else None,
        )
        if outcome.err is not None:
            return outcome, None
        accounts = value.get("accounts")
        if not isinstance(accounts, list) or len(accounts) != len(pubkeys):
            raise malformed_response(self._url, "simulateTransaction: no accounts returned")
        return outcome, [self._account(item, "simulateTransaction") for item in accounts]

    def _account(self, value: Any, method: str) -> AccountData | None:
        if value is None:
            return None
        try:
            encoded, encoding = value["data"]
            if encoding != "base64":
                raise ValueError(encoding)
            return AccountData(
                lamports=self._int(method, value["lamports"]),
                owner=Pubkey.from_string(value["owner"]),
                data=base64.b64decode(encoded, validate=True),
                executable=bool(value["executable"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed_response(self._url, f"{method}: bad account") from exc

    def get_balance(self, pubkey: Pubkey) -> int:
        result = self._call("getBalance", [str(pubkey), self._config()])
        return self._int("getBalance", self._value("getBalance", result))

    def get_token_amount(self, token_account: Pubkey) -> int | None:
        try:
            result = self._call_raw("getTokenAccountBalance", [str(token_account), self._config()])
        except _RpcErrorObject as exc:
            code = exc.error.get("code") if isinstance(exc.error, Mapping) else None
            # Nodes answer -32602 "could not find account" for a missing account.
            if code == -32602 and self.get_account(token_account) is None:
                return None
            raise map_rpc_error(exc.error) from None
        value = self._value("getTokenAccountBalance", result)
        try:
            amount = value["amount"]
            if not isinstance(amount, str) or not amount.isdigit():
                raise ValueError(amount)
            return int(amount)
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed_response(self._url, "getTokenAccountBalance: bad amount") from exc

    def rent_exempt_minimum(self, size: int) -> int:
        result = self._call("getMinimumBalanceForRentExemption", [size, self._config()])
        return self._int("getMinimumBalanceForRentExemption", result)

    def fee_for_message(self, message: MessageV0) -> int:
        encoded = base64.b64encode(to_bytes_versioned(message)).decode()
        value = self._value(
            "getFeeForMessage", self._call("getFeeForMessage", [encoded, self._config()])
        )
        if value is None:
            # The node does not know the blockhash (any more): the message is stale.
            raise map_transaction_error("BlockhashNotFound")
        return self._int("getFeeForMessage", value)

    # ------------------------------------------------------------------ transactions

    def simulate(
        self, tx: VersionedTransaction, *, sig_verify: bool, context: TxContext
    ) -> SimOutcome:
        encoded = base64.b64encode(bytes(tx)).decode()
        config = self._config(encoding="base64", sigVerify=sig_verify, replaceRecentBlockhash=False)
        value = self._value(
            "simulateTransaction", self._call("simulateTransaction", [encoded, config], context)
        )
        if not isinstance(value, Mapping):
            raise malformed_response(self._url, "simulateTransaction: bad value")
        logs = value.get("logs") or ()
        units = value.get("unitsConsumed")
        return SimOutcome(
            err=value.get("err"),
            logs=tuple(str(line) for line in logs),
            units_consumed=units if isinstance(units, int) else None,
        )

    def send(self, tx: VersionedTransaction, *, preflight: bool, context: TxContext) -> SendResult:
        encoded = base64.b64encode(bytes(tx)).decode()
        config = {
            "encoding": "base64",
            "skipPreflight": not preflight,
            "preflightCommitment": self._commitment,
        }
        try:
            result = self._call_raw("sendTransaction", [encoded, config])
        except _RpcErrorObject as exc:
            error = exc.error
            data = error.get("data") if isinstance(error, Mapping) else None
            if isinstance(data, Mapping) and is_already_processed(data.get("err")):
                return SendResult.ALREADY_PROCESSED
            raise map_rpc_error(error, context=context) from None
        if result != str(tx.signatures[0]):
            raise malformed_response(self._url, "sendTransaction: returned another signature")
        return SendResult.SENT

    def _signature_status(self, signature: Signature) -> Mapping[str, Any] | None:
        value = self._value(
            "getSignatureStatuses",
            self._call(
                "getSignatureStatuses", [[str(signature)], {"searchTransactionHistory": True}]
            ),
        )
        if not isinstance(value, list) or len(value) != 1:
            raise malformed_response(self._url, "getSignatureStatuses: expected one status")
        status = value[0]
        if status is not None and not isinstance(status, Mapping):
            raise malformed_response(self._url, "getSignatureStatuses: bad status")
        return status

    def get_transaction(self, signature: Signature) -> TxRecord | None:
        status = self._signature_status(signature)
        if status is None:
            return None
        level = status.get("confirmationStatus") or "processed"
        final = _COMMITMENT_RANK.get(str(level), 0) >= _COMMITMENT_RANK[self._commitment]
        slot = status.get("slot") if isinstance(status.get("slot"), int) else None
        fee: int | None = None
        logs: tuple[str, ...] = ()
        if final:
            detail = self._call(
                "getTransaction",
                [
                    str(signature),
                    {
                        "encoding": "base64",
                        "commitment": "confirmed"
                        if self._commitment == "processed"
                        else self._commitment,
                        "maxSupportedTransactionVersion": 0,
                    },
                ],
            )
            meta = detail.get("meta") if isinstance(detail, Mapping) else None
            if isinstance(meta, Mapping):
                fee = meta.get("fee") if isinstance(meta.get("fee"), int) else None
                logs = tuple(str(line) for line in meta.get("logMessages") or ())
        return TxRecord(err=status.get("err"), final=final, slot=slot, fee=fee, logs=logs)

    def airdrop(self, pubkey: Pubkey, lamports: int) -> None:
        signature_text = self._call("requestAirdrop", [str(pubkey), lamports, self._config()])
        try:
            signature = Signature.from_string(signature_text)
        except (TypeError, ValueError) as exc:
            raise malformed_response(self._url, "requestAirdrop: bad signature") from exc
        deadline = time.monotonic() + self._airdrop_timeout
        delay = 0.002
        while True:
            record = self.get_transaction(signature)
            if record is not None and record.final:
                if record.err is not None:
                    raise map_transaction_error(record.err, logs=record.logs)
                return
            if time.monotonic() >= deadline:
                error: ChainError = TransientChainError(
                    "airdrop not confirmed in time", chain="solana", detail=str(signature)
                )
                raise error
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def close(self) -> None:
        self._client.close()
