"""The one place where EVM upstream failures become waiaas errors.

Three families of failures reach the EVM adapter:

* the in-process chain (eth-tester + py-evm) raises plain Python exceptions:
  ``eth_utils.exceptions.ValidationError`` (nonce, balance, fee checks of py-evm),
  ``eth_tester.exceptions.ValidationError`` (malformed input) and
  ``eth_tester.exceptions.TransactionFailed`` (a revert during a call or gas estimate);
* a JSON-RPC node (anvil, geth, a provider) answers with an error object, which web3 raises as
  ``web3.exceptions.Web3RPCError`` (code + message), or as ``ContractLogicError`` and its
  subclasses ``ContractCustomError`` / ``ContractPanicError`` for reverts;
* the transport fails: timeouts, refused connections, HTTP 429 / 5xx, garbage responses.

:func:`map_evm_error` turns any of them into a :class:`~waiaas.errors.ChainError` subclass whose
``kind`` tells the pipeline what to do (fail, retry, rebuild). The mapping table is documented
in ``docs/chains-evm.md`` and every row is exercised against real failures in the tests.

Messages never contain secrets: the RPC URL (which often embeds an API key) is redacted from
every detail string.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from collections.abc import Iterable
from typing import Any

from waiaas.errors import (
    ChainError,
    ExecutionRevertedError,
    InsufficientFundsError,
    PermanentChainError,
    StaleTransactionError,
    TransientChainError,
)

__all__ = ["ChainIdMismatchError", "decode_revert_data", "map_evm_error"]

_CHAIN = "evm"

_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

_PANIC_CODES = {
    0x00: "generic compiler panic",
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "invalid storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}

_NONCE_RE = re.compile(r"Invalid transaction nonce: Expected (\d+), but got (\d+)")
_REVERT_PREFIX = "execution reverted"


class ChainIdMismatchError(PermanentChainError):
    """A transaction or node is for another chain than the adapter is configured for.

    Raised when the node behind an RPC URL reports another chain id than the one configured,
    when a transaction to sign or submit names another chain id, and when a node refuses a
    transaction because of its chain id (JSON-RPC ``-32003 invalid chain id for signer``).

    Attributes:
        expected: the chain id the adapter is configured with (``None`` if unknown).
        found: the chain id seen on the node or in the transaction (``None`` if unknown).
    """

    code = "CHAIN_ID_MISMATCH"

    def __init__(
        self,
        message: str,
        *,
        expected: int | None = None,
        found: int | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message, chain=_CHAIN, detail=detail)
        self.expected = expected
        self.found = found


def decode_revert_data(data: bytes) -> str | None:
    """Render EVM revert data as a reason string.

    ``Error(string)`` gives its message, ``Panic(uint256)`` a description of the panic code, a
    custom error ``"custom error 0x<selector>"``; empty data gives ``None``.

    >>> decode_revert_data(bytes.fromhex("4e487b71" + "00" * 31 + "11"))
    'panic 0x11: arithmetic overflow or underflow'
    """
    if not data:
        return None
    selector, body = data[:4], data[4:]
    if selector == _ERROR_STRING_SELECTOR:
        length = int.from_bytes(body[32:64], "big") if len(body) >= 64 else -1
        text = body[64 : 64 + length] if length >= 0 else b""
        if length >= 0 and len(text) == length:
            return text.decode("utf-8", errors="replace")
        return "reverted with a malformed Error(string)"
    if selector == _PANIC_SELECTOR and len(body) >= 32:
        panic = int.from_bytes(body[:32], "big")
        return f"panic 0x{panic:02x}: {_PANIC_CODES.get(panic, 'unknown panic code')}"
    if len(data) >= 4:
        return f"custom error 0x{selector.hex()}"
    return f"reverted with data 0x{data.hex()}"


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _reason_from_text(text: str) -> str | None:
    """Extract the revert reason from ``execution reverted: <reason>``-style messages."""
    lowered = text.lower()
    index = lowered.find(_REVERT_PREFIX)
    if index < 0:
        index = lowered.find("reverted with reason string")
        if index < 0:
            return None
        tail = text[index + len("reverted with reason string") :].strip()
        return tail.strip("'\"") or None
    tail = text[index + len(_REVERT_PREFIX) :].lstrip(":").strip()
    if not tail:
        return None
    if tail.startswith(("b'", 'b"')):
        # eth-tester renders undecoded revert data as a bytes literal.
        try:
            raw = ast.literal_eval(tail)
        except (ValueError, SyntaxError):
            return tail
        if isinstance(raw, bytes):
            return decode_revert_data(raw)
    return tail


def _hex_to_bytes(data: object) -> bytes:
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):
        text = data[2:] if data.startswith(("0x", "0X")) else data
        try:
            return bytes.fromhex(text)
        except ValueError:
            return b""
    return b""


def _rpc_error_fields(exc: BaseException) -> tuple[int | None, str, object]:
    """The JSON-RPC ``(code, message, data)`` carried by a ``Web3RPCError``."""
    response: Any = getattr(exc, "rpc_response", None)
    error: Any = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, int) else None,
            message if isinstance(message, str) else str(exc),
            error.get("data"),
        )
    return None, str(getattr(exc, "message", None) or exc), None


def _reverted(message: str, detail: str, reason: str | None) -> ExecutionRevertedError:
    shown = f"{message}: {reason}" if reason else message
    return ExecutionRevertedError(shown, chain=_CHAIN, detail=detail, reason=reason)


def _insufficient(detail: str) -> InsufficientFundsError:
    return InsufficientFundsError(
        "the sender cannot pay the value plus gas * max fee", chain=_CHAIN, detail=detail
    )


def _from_message(message: str, detail: str) -> ChainError | None:
    """Classify by message text: the same conditions read alike across node implementations."""
    text = message.lower()
    if "nonce too low" in text or "nonce has already been used" in text:
        return StaleTransactionError(
            "the nonce was already used; rebuild with a fresh nonce", chain=_CHAIN, detail=detail
        )
    if "nonce too high" in text or "nonce gap" in text:
        return TransientChainError(
            "the nonce is ahead of the sender's pending transactions", chain=_CHAIN, detail=detail
        )
    if "insufficient funds" in text or "insufficient balance for transfer" in text:
        return _insufficient(detail)
    if (
        "chain id" in text
        or "chainid" in text
        or "incompatible eip-155" in text
        or "eip-155" in text
    ):
        return ChainIdMismatchError("the node refused the transaction's chain id", detail=detail)
    if (
        "underpriced" in text
        or "less than block base fee" in text
        or "lower than block's base fee" in text
        or "fee cap less than" in text
    ):
        return StaleTransactionError(
            "the transaction's fees are too low for the chain now; rebuild with current fees",
            chain=_CHAIN,
            detail=detail,
        )
    if "already known" in text or "already imported" in text or "known transaction" in text:
        return TransientChainError(
            "the node already holds this transaction", chain=_CHAIN, detail=detail
        )
    if _REVERT_PREFIX in text or "reverted with reason" in text or "vm exception" in text:
        return _reverted("execution reverted", detail, _reason_from_text(message))
    if "intrinsic gas" in text or "gas limit" in text or "out of gas" in text:
        return PermanentChainError(
            "the transaction's gas limit is invalid", chain=_CHAIN, detail=detail
        )
    if (
        "header not found" in text
        or "rate limit" in text
        or "too many requests" in text
        or "timeout" in text
        or "timed out" in text
        or "try again" in text
        or "busy" in text
    ):
        return TransientChainError(
            "the node is temporarily unable to answer", chain=_CHAIN, detail=detail
        )
    return None


def _from_rpc_error(exc: BaseException, secrets: Iterable[str], prefix: str) -> ChainError:
    code, message, data = _rpc_error_fields(exc)
    detail = _redact(f"{prefix}JSON-RPC error {code}: {message}", secrets)
    if code == 3:  # geth: execution reverted, revert data attached
        reason = decode_revert_data(_hex_to_bytes(data)) or _reason_from_text(message)
        return _reverted("execution reverted", detail, reason)
    by_message = _from_message(message, detail)
    if by_message is not None:
        return by_message
    if code in (-32005, -32603):  # limit exceeded, internal error
        return TransientChainError("the node failed internally; retry", chain=_CHAIN, detail=detail)
    if code == -32601:
        return PermanentChainError(
            "the node does not support a method the adapter needs", chain=_CHAIN, detail=detail
        )
    if code == -32602:
        return PermanentChainError(
            "the node refused the request's parameters", chain=_CHAIN, detail=detail
        )
    if code == -32003:
        return PermanentChainError("the node rejected the transaction", chain=_CHAIN, detail=detail)
    return PermanentChainError("the node refused the request", chain=_CHAIN, detail=detail)


def _from_validation_error(message: str, detail: str) -> ChainError:
    """py-evm / eth-tester validation failures (the in-process chain)."""
    nonce = _NONCE_RE.search(message)
    if nonce is not None:
        expected, got = int(nonce.group(1)), int(nonce.group(2))
        if got < expected:
            return StaleTransactionError(
                "the nonce was already used; rebuild with a fresh nonce",
                chain=_CHAIN,
                detail=detail,
            )
        return TransientChainError(
            "the nonce is ahead of the sender's mined transactions",
            chain=_CHAIN,
            detail=detail,
        )
    text = message.lower()
    if "cannot afford txn gas" in text or "does not have enough balance" in text:
        return _insufficient(detail)
    if "insufficient funds" in text:
        return _insufficient(detail)
    by_message = _from_message(message, detail)
    if by_message is not None:
        return by_message
    return PermanentChainError(
        "the chain refused the transaction as invalid", chain=_CHAIN, detail=detail
    )


def _from_http_error(exc: BaseException, detail: str) -> ChainError:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500 or status == 408):
        return TransientChainError(
            f"the node answered HTTP {status}; retry later", chain=_CHAIN, detail=detail
        )
    return PermanentChainError(f"the node answered HTTP {status}", chain=_CHAIN, detail=detail)


def map_evm_error(exc: BaseException, *, op: str = "", redact: Iterable[str] = ()) -> ChainError:
    """Translate an upstream EVM failure into a waiaas :class:`ChainError`.

    Args:
        exc: the exception raised by web3, eth-tester, py-evm or the HTTP transport.
        op: what the adapter was doing (``"estimate_gas"``, ``"send_raw_transaction"``, ...);
            prefixed to the ``detail`` text.
        redact: strings removed from every detail (the RPC URL, which may embed an API key).

    Returns:
        The mapped error (never raised here): ``InsufficientFundsError``,
        ``ExecutionRevertedError`` (with ``reason``), ``StaleTransactionError``,
        ``TransientChainError``, :class:`ChainIdMismatchError` or ``PermanentChainError``.
        A ``ChainError`` passed in is returned unchanged.

    Example::

        try:
            w3.eth.send_raw_transaction(raw)
        except Exception as exc:
            raise map_evm_error(exc, op="send_raw_transaction") from exc
    """
    if isinstance(exc, ChainError):
        return exc
    mapped = _map(exc, op, tuple(redact))
    code, _, _ = _rpc_error_fields(exc) if _is_rpc_error(exc) else (None, "", None)
    mapped.rpc_code = code
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        mapped.http_status = status
        headers = getattr(response, "headers", None) or {}
        retry_after = headers.get("Retry-After")
        mapped.retry_after = retry_after if isinstance(retry_after, str) else None
    return mapped


def _is_rpc_error(exc: BaseException) -> bool:
    from web3.exceptions import Web3RPCError

    return isinstance(exc, Web3RPCError)


def _map(exc: BaseException, op: str, secrets: tuple[str, ...]) -> ChainError:
    name = type(exc).__name__
    module = type(exc).__module__
    prefix = f"{op}: " if op else ""
    detail = _redact(f"{prefix}{name}: {exc}", secrets)
    mapped = _from_web3(exc, secrets, prefix, detail)
    if mapped is not None:
        return mapped

    # eth-tester / py-evm (the in-process chain).
    if name == "TransactionFailed" and module.startswith("eth_tester"):
        return _reverted("execution reverted", detail, _reason_from_text(str(exc)))
    if name == "ValidationError" and module.startswith(("eth_utils", "eth_tester", "eth")):
        return _from_validation_error(str(exc), detail)
    return _from_transport(exc, detail)


def _from_web3(
    exc: BaseException, secrets: tuple[str, ...], prefix: str, detail: str
) -> ChainError | None:
    """web3's exceptions (revert exceptions first: they carry the revert data); ``None`` for
    any other exception."""
    from web3 import exceptions as w3x

    if isinstance(exc, w3x.ContractPanicError | w3x.ContractCustomError):
        data = _hex_to_bytes(getattr(exc, "data", None))
        return _reverted("execution reverted", detail, decode_revert_data(data))
    if isinstance(exc, w3x.ContractLogicError):
        reason = _reason_from_text(str(getattr(exc, "message", None) or exc))
        if reason is None:
            reason = decode_revert_data(_hex_to_bytes(getattr(exc, "data", None)))
        return _reverted("execution reverted", detail, reason)
    if isinstance(exc, w3x.RequestTimedOut | w3x.TimeExhausted | w3x.TooManyRequests):
        return TransientChainError("the node did not answer in time", chain=_CHAIN, detail=detail)
    if isinstance(exc, w3x.Web3RPCError):
        return _from_rpc_error(exc, secrets, prefix)
    if isinstance(exc, w3x.ProviderConnectionError | w3x.BadResponseFormat):
        return TransientChainError("the node could not be reached", chain=_CHAIN, detail=detail)
    return None


def _from_transport(exc: BaseException, detail: str) -> ChainError:
    """The HTTP transport's errors (requests, used by web3's HTTPProvider); anything else is
    a permanent failure of the backend."""
    if isinstance(exc, json.JSONDecodeError):
        return TransientChainError(
            "the node answered something that is not JSON-RPC", chain=_CHAIN, detail=detail
        )
    requests: Any = importlib.import_module("requests")

    if isinstance(exc, requests.HTTPError):
        return _from_http_error(exc, detail)
    if isinstance(exc, requests.Timeout | requests.ConnectionError | TimeoutError):
        return TransientChainError("the node could not be reached", chain=_CHAIN, detail=detail)
    if isinstance(exc, requests.RequestException | ConnectionError):
        return TransientChainError("the request to the node failed", chain=_CHAIN, detail=detail)
    return PermanentChainError("the EVM backend failed", chain=_CHAIN, detail=detail)
