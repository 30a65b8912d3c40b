"""The one place where Solana failures become waiaas errors.

Failures reach the adapter in four shapes, and all of them end here:

* a solders ``TransactionErrorType`` from LiteSVM, first turned into the JSON form a node
  uses (:func:`transaction_error_to_json`), so both backends share one mapping;
* a transaction error in that JSON form (``"BlockhashNotFound"``,
  ``{"InstructionError": [0, {"Custom": 1}]}``), from ``getSignatureStatuses``,
  ``simulateTransaction`` or the ``data`` of a ``sendTransaction`` preflight failure;
* a JSON-RPC error object (``{"code": -32002, "message": ..., "data": ...}``);
* an HTTP status or a transport failure (timeout, refused connection).

=================================================  ==========================  =========
upstream failure                                   waiaas error                kind
=================================================  ==========================  =========
``BlockhashNotFound``                              StaleTransactionError       stale
``AlreadyProcessed``                               PermanentChainError [1]_    permanent
``SignatureFailure``, RPC -32003                   PermanentChainError         permanent
``InsufficientFundsForFee``                        InsufficientFundsError      permanent
``AccountNotFound`` (fee payer never funded)       InsufficientFundsError      permanent
``InsufficientFundsForRent``                       InsufficientFundsError      permanent
System program custom error 1                      InsufficientFundsError      permanent
SPL Token / Token-2022 custom error 1              InsufficientFundsError      permanent
instruction error ``InsufficientFunds``            InsufficientFundsError      permanent
any other instruction error                        ExecutionRevertedError      permanent
``AccountInUse``, cost limits, cluster busy        TransientChainError         transient
other transaction errors                           PermanentChainError         permanent
RPC -32002 (preflight failure)                     by its ``data.err``         (as above)
RPC -32004/-32005/-32007/-32014/-32016, -32603     TransientChainError         transient
RPC -32013/-32015, -32600/-32601/-32602/-32700     PermanentChainError         permanent
HTTP 408, 429, 5xx; timeouts; connection errors    TransientChainError         transient
other HTTP 4xx                                     PermanentChainError         permanent
=================================================  ==========================  =========

.. [1] ``submit`` treats ``AlreadyProcessed`` for the bytes it was given as success: the
   signature is deterministic, so the same signature means the same transaction landed.

Every mapped error carries ``chain="solana"`` and a ``detail`` text, and where known the
structured fields ``solana_error`` (the JSON error, as compact JSON text), ``logs``,
``instruction_index``, ``program_id``, ``custom_code``, ``rpc_code`` and ``http_status``.
Nothing secret is ever part of a failure, and endpoint URLs are reduced to scheme and host
so an API key in a query string cannot leak.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from waiaas.errors import (
    ChainError,
    ExecutionRevertedError,
    InsufficientFundsError,
    PermanentChainError,
    StaleTransactionError,
    TransientChainError,
)

__all__ = [
    "TransactionErrorJson",
    "TxContext",
    "is_already_processed",
    "malformed_response",
    "map_http_status",
    "map_rpc_error",
    "map_transaction_error",
    "map_transport_error",
    "redact_url",
    "transaction_error_to_json",
]

CHAIN = "solana"

TransactionErrorJson: TypeAlias = str | dict[str, Any]
"""A transaction error as a node renders it in JSON (``"BlockhashNotFound"``, ``{...}``)."""

_SYSTEM_PROGRAM = "11111111111111111111111111111111"
_TOKEN_PROGRAMS = frozenset(
    {
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
        "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
    }
)
_ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"

# Program error enums, in declaration order (the custom error code is the index).
_SYSTEM_ERRORS = (
    "AccountAlreadyInUse",
    "ResultWithNegativeLamports",
    "InvalidProgramId",
    "InvalidAccountDataLength",
    "MaxSeedLengthExceeded",
    "AddressWithSeedMismatch",
    "NonceNoRecentBlockhashes",
    "NonceBlockhashNotExpired",
    "NonceUnexpectedBlockhashValue",
)
_TOKEN_ERRORS = (
    "NotRentExempt",
    "InsufficientFunds",
    "InvalidMint",
    "MintMismatch",
    "OwnerMismatch",
    "FixedSupply",
    "AlreadyInUse",
    "InvalidNumberOfProvidedSigners",
    "InvalidNumberOfRequiredSigners",
    "UninitializedState",
    "NativeNotSupported",
    "NonNativeHasBalance",
    "InvalidInstruction",
    "InvalidState",
    "Overflow",
    "AuthorityTypeNotSupported",
    "MintCannotFreeze",
    "AccountFrozen",
    "MintDecimalsMismatch",
    "NonNativeNotSupported",
)
_ATA_ERRORS = ("InvalidOwner",)

# Transaction errors that say "the cluster is busy right now", not "this tx is wrong".
_TRANSIENT_TX_ERRORS = frozenset(
    {
        "AccountInUse",
        "ClusterMaintenance",
        "CommitCancelled",
        "ProgramCacheHitMaxLimit",
        "WouldExceedAccountDataBlockLimit",
        "WouldExceedAccountDataTotalLimit",
        "WouldExceedMaxAccountCostLimit",
        "WouldExceedMaxBlockCostLimit",
        "WouldExceedMaxVoteCostLimit",
    }
)

_TX_ERROR_TEXT = {
    "AccountInUse": "an account is in use by another transaction",
    "AccountNotFound": "the fee payer account does not exist (it was never funded)",
    "AlreadyProcessed": "this transaction has already been processed",
    "BlockhashNotFound": "the transaction's blockhash has expired or is unknown",
    "InsufficientFundsForFee": "the fee payer cannot pay the transaction fee",
    "InvalidAccountForFee": "the fee payer cannot pay fees (not a system account)",
    "InvalidProgramForExecution": "the called program does not exist or is not executable",
    "ProgramAccountNotFound": "the called program account does not exist",
    "SignatureFailure": "the transaction signature did not verify",
    "AccountLoadedTwice": "an account is listed twice",
    "MissingSignatureForFee": "the fee payer did not sign",
    "SanitizeFailure": "the transaction is malformed",
    "TooManyAccountLocks": "the transaction uses too many accounts",
    "UnsupportedVersion": "the transaction version is not supported",
}

_RPC_TRANSIENT_CODES = frozenset(
    {
        -32004,  # block not available
        -32005,  # node unhealthy / behind
        -32007,  # slot skipped
        -32009,  # long-term storage slot skipped
        -32014,  # block status not available yet
        -32016,  # minimum context slot not reached
        -32603,  # internal error
    }
)

_FAILED_LOG = re.compile(r"^Program (\w{32,44}) failed: (.*)$")


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class TxContext:
    """What is known about the failing transaction, to name accounts and programs.

    Attributes:
        account_keys: the message's static account keys, base58, in order.
        instruction_programs: the program id of each top-level instruction, base58.
    """

    account_keys: tuple[str, ...] = ()
    instruction_programs: tuple[str, ...] = ()

    @classmethod
    def from_message(cls, message: Any) -> TxContext:
        """Build the context from a solders ``Message`` / ``MessageV0`` (or ``None``)."""
        if message is None:
            return cls()
        keys = tuple(str(k) for k in message.account_keys)
        programs = tuple(
            keys[ix.program_id_index] if ix.program_id_index < len(keys) else "?"
            for ix in message.instructions
        )
        return cls(account_keys=keys, instruction_programs=programs)


# --------------------------------------------------------------------------- solders -> JSON


def _enum_name(value: object) -> str:
    # solders' fieldless enums render as "TransactionErrorFieldless.AlreadyProcessed".
    return str(value).rsplit(".", 1)[-1]


def transaction_error_to_json(err: object) -> TransactionErrorJson:
    """Render a solders ``TransactionErrorType`` exactly as a node's JSON-RPC does.

    >>> from solders.transaction_status import TransactionErrorFieldless
    >>> transaction_error_to_json(TransactionErrorFieldless.BlockhashNotFound)
    'BlockhashNotFound'
    """
    from solders import transaction_status as ts

    if isinstance(err, ts.TransactionErrorFieldless):
        return _enum_name(err)
    if isinstance(err, ts.TransactionErrorInstructionError):
        inner = err.err
        inner_json: str | dict[str, Any]
        if isinstance(inner, ts.InstructionErrorCustom):
            inner_json = {"Custom": inner.code}
        else:
            inner_json = _enum_name(inner)
        return {"InstructionError": [err.index, inner_json]}
    if isinstance(err, ts.TransactionErrorInsufficientFundsForRent):
        return {"InsufficientFundsForRent": {"account_index": err.account_index}}
    if isinstance(err, ts.TransactionErrorDuplicateInstruction):
        return {"DuplicateInstruction": err.index}
    if isinstance(err, ts.TransactionErrorProgramExecutionTemporarilyRestricted):
        return {"ProgramExecutionTemporarilyRestricted": {"account_index": err.account_index}}
    return str(err)


def is_already_processed(err: object) -> bool:
    """True when ``err`` (JSON form) says the transaction already landed."""
    return err == "AlreadyProcessed"


# --------------------------------------------------------------------------- mapping


def _attach(error: ChainError, **fields: Any) -> ChainError:
    for name, value in fields.items():
        if value is not None:
            setattr(error, name, value)
    return error


def _compact(err: object) -> str:
    try:
        return json.dumps(err, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return repr(err)


def _failing_program(logs: Sequence[str]) -> tuple[str | None, str | None]:
    """The innermost program that failed, and its failure text, from the logs."""
    for line in logs:
        match = _FAILED_LOG.match(line)
        if match:
            return match.group(1), match.group(2)
    return None, None


def _hint(logs: Sequence[str]) -> str | None:
    """The last log line that explains a failure in words, if any."""
    for line in reversed(logs):
        text = line.removeprefix("Program log: ")
        lowered = text.lower()
        if (
            "insufficient" in lowered
            or lowered.startswith("error")
            or ("failed:" in lowered and "custom program error" not in lowered)
        ):
            return text.removeprefix("Error: ")
    return None


def _named_custom_error(program: str | None, code: int) -> str | None:
    table: tuple[str, ...] = ()
    prefix = ""
    if program == _SYSTEM_PROGRAM:
        table, prefix = _SYSTEM_ERRORS, "SystemError"
    elif program in _TOKEN_PROGRAMS:
        table, prefix = _TOKEN_ERRORS, "TokenError"
    elif program == _ATA_PROGRAM:
        table, prefix = _ATA_ERRORS, "AssociatedTokenAccountError"
    if 0 <= code < len(table):
        return f"{prefix}::{table[code]}"
    return None


def _account(context: TxContext, index: int) -> str:
    if 0 <= index < len(context.account_keys):
        return context.account_keys[index]
    return f"#{index}"


def _map_instruction_error(
    index: int, inner: object, logs: tuple[str, ...], context: TxContext, raw: str
) -> ChainError:
    failed_program, failed_text = _failing_program(logs)
    top_program = (
        context.instruction_programs[index]
        if 0 <= index < len(context.instruction_programs)
        else None
    )
    program = failed_program or top_program
    hint = _hint(logs)
    custom_code: int | None = None
    if isinstance(inner, Mapping) and isinstance(inner.get("Custom"), int):
        custom_code = int(inner["Custom"])
        named = _named_custom_error(program, custom_code)
        reason = named or f"custom program error 0x{custom_code:x}"
        insufficient = custom_code == 1 and (
            program == _SYSTEM_PROGRAM or program in _TOKEN_PROGRAMS
        )
    else:
        reason = inner if isinstance(inner, str) else _compact(inner)
        insufficient = reason == "InsufficientFunds"
    where = f"instruction {index}" + (f", program {program}" if program else "")
    detail = (f"{raw}; " + " | ".join(logs[-6:])) if logs else raw
    fields: dict[str, Any] = {
        "solana_error": raw,
        "logs": logs,
        "instruction_index": index,
        "program_id": program,
        "custom_code": custom_code,
    }
    if insufficient:
        text = f"insufficient funds ({where}): {hint or reason}"
        return _attach(InsufficientFundsError(text, chain=CHAIN, detail=detail), **fields)
    text = f"{where} failed: {reason}"
    if hint and hint != reason:
        text += f" ({hint})"
    elif failed_text and "custom program error" not in failed_text:
        text += f" ({failed_text})"
    error = ExecutionRevertedError(text, chain=CHAIN, detail=detail, reason=reason)
    return _attach(error, **fields)


def map_transaction_error(
    err: object,
    *,
    logs: Sequence[str] = (),
    context: TxContext | None = None,
) -> ChainError:
    """Map a transaction error (JSON form, or a solders error object) to a waiaas error.

    Args:
        err: ``"BlockhashNotFound"``, ``{"InstructionError": [0, {"Custom": 1}]}``, ... or
            the solders object LiteSVM returned.
        logs: the program logs of the failed execution (kept on the error).
        context: the failing transaction's accounts and programs, to name them.

    Returns:
        The mapped error (not raised), with ``kind`` permanent, transient or stale.
    """
    if not isinstance(err, str | Mapping):
        err = transaction_error_to_json(err)
    context = context or TxContext()
    log_tuple = tuple(str(line) for line in logs)
    raw = _compact(err)
    if isinstance(err, str):
        text = _TX_ERROR_TEXT.get(err, err)
        cls: type[ChainError]
        if err == "BlockhashNotFound":
            cls = StaleTransactionError
        elif err in ("InsufficientFundsForFee", "AccountNotFound"):
            cls = InsufficientFundsError
        elif err in _TRANSIENT_TX_ERRORS:
            cls = TransientChainError
        else:
            cls = PermanentChainError
        return _attach(cls(text, chain=CHAIN, detail=raw), solana_error=raw, logs=log_tuple)
    if "InstructionError" in err:
        pair = err["InstructionError"]
        if isinstance(pair, Sequence) and len(pair) == 2 and isinstance(pair[0], int):
            return _map_instruction_error(pair[0], pair[1], log_tuple, context, raw)
    if "InsufficientFundsForRent" in err:
        info = err["InsufficientFundsForRent"]
        index = info.get("account_index", -1) if isinstance(info, Mapping) else -1
        text = (
            f"insufficient funds for rent: account {_account(context, int(index))} would be "
            "left below its rent-exempt minimum"
        )
        error: ChainError = InsufficientFundsError(text, chain=CHAIN, detail=raw)
        return _attach(error, solana_error=raw, logs=log_tuple)
    if "ProgramExecutionTemporarilyRestricted" in err:
        error = TransientChainError(
            "program execution is temporarily restricted", chain=CHAIN, detail=raw
        )
        return _attach(error, solana_error=raw, logs=log_tuple)
    error = PermanentChainError(f"transaction failed: {raw}", chain=CHAIN, detail=raw)
    return _attach(error, solana_error=raw, logs=log_tuple)


def map_rpc_error(error: object, *, context: TxContext | None = None) -> ChainError:
    """Map a JSON-RPC ``error`` object from a node to a waiaas error.

    A preflight failure (-32002) is mapped by the transaction error in its ``data``, with
    the simulation logs kept on the result.
    """
    if not isinstance(error, Mapping):
        return _attach(
            TransientChainError(
                "malformed JSON-RPC error from the node", chain=CHAIN, detail=repr(error)[:200]
            )
        )
    code = error.get("code")
    message = str(error.get("message", ""))[:500]
    data = error.get("data")
    if not isinstance(code, int) or isinstance(code, bool):
        return TransientChainError(
            f"malformed JSON-RPC error from the node: {message}", chain=CHAIN, detail=message
        )
    detail = f"JSON-RPC {code}: {message}"
    if code == -32002 and isinstance(data, Mapping) and data.get("err") is not None:
        logs = data.get("logs") or ()
        mapped = map_transaction_error(
            data["err"], logs=[str(line) for line in logs], context=context
        )
        return _attach(mapped, rpc_code=code)
    if code == -32003:
        mapped = PermanentChainError(_TX_ERROR_TEXT["SignatureFailure"], chain=CHAIN, detail=detail)
        return _attach(mapped, rpc_code=code, solana_error='"SignatureFailure"')
    cls: type[ChainError] = (
        TransientChainError if code in _RPC_TRANSIENT_CODES else PermanentChainError
    )
    return _attach(
        cls(f"node refused the request: {message}", chain=CHAIN, detail=detail), rpc_code=code
    )


def map_http_status(status: int, *, endpoint: str, retry_after: str | None = None) -> ChainError:
    """Map a non-2xx HTTP status from the node: 408/429/5xx transient, others permanent."""
    where = redact_url(endpoint)
    detail = f"HTTP {status} from {where}"
    if status in (408, 429) or status >= 500:
        text = "rate limited by the node" if status == 429 else f"node unavailable ({detail})"
        error: ChainError = TransientChainError(text, chain=CHAIN, detail=detail)
        return _attach(error, http_status=status, retry_after=retry_after)
    error = PermanentChainError(f"node refused the request ({detail})", chain=CHAIN, detail=detail)
    return _attach(error, http_status=status)


def map_transport_error(exc: BaseException, *, endpoint: str) -> ChainError:
    """Map an httpx transport failure (timeout, refused connection, ...): always transient."""
    import httpx

    where = redact_url(endpoint)
    if isinstance(exc, httpx.TimeoutException):
        text = f"the node at {where} did not answer in time"
    else:
        text = f"cannot reach the node at {where}"
    return TransientChainError(text, chain=CHAIN, detail=f"{type(exc).__name__}: {exc}"[:300])


def malformed_response(endpoint: str, what: str) -> ChainError:
    """A node answered with something that is not the JSON-RPC shape expected (transient)."""
    where = redact_url(endpoint)
    return TransientChainError(
        f"malformed response from the node at {where}", chain=CHAIN, detail=what[:300]
    )


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: paths and query strings may hold API keys."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{host}{port}" if parts.scheme else "<invalid url>"
