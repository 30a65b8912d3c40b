"""Request parsing, per-chain normalisation and the amounts a request spends.

Internal helpers of the pipeline; pure apart from calling ``adapter.validate_address``. What
a chain family allows (a ``Batch``, which raw calls are disguised transfers) is asked of the
adapter (:func:`waiaas.chains.base.batch_supported`, :func:`~waiaas.chains.base.call_refusal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from waiaas.chains.base import ChainAdapter, batch_supported, call_refusal
from waiaas.errors import InvalidInputError
from waiaas.types import (
    AccountSpec,
    Approve,
    Batch,
    ContractCall,
    Request,
    TokenTransfer,
    Transfer,
    TxType,
)

__all__ = ["NATIVE", "normalize_request", "parse_request", "spend_by_asset", "summary"]

NATIVE = "native"
_REQUEST = TypeAdapter(Request)


def parse_request(value: object) -> Request:
    """A request model from a model instance or a mapping (e.g. JSON from an agent).

    Raises:
        InvalidInputError: with every problem found (``problems``).
    """
    if isinstance(value, Transfer | TokenTransfer | ContractCall | Approve | Batch):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            "request must be a Transfer, TokenTransfer, ContractCall, Approve or Batch "
            "(or a mapping with a 'type' field)",
            field="request",
        )
    try:
        return _REQUEST.validate_python(dict(value))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise InvalidInputError(
            "invalid request: " + "; ".join(problems), field="request", problems=problems
        ) from None


def normalize_request(adapter: ChainAdapter, request: Request) -> Request:
    """Validate and normalise every address in ``request`` with the chain's rules.

    Raises:
        InvalidAddressError: an address is not valid on this chain.
        InvalidInputError: the request type is not possible on this chain.
    """
    v = adapter.validate_address
    if isinstance(request, Transfer):
        return request.model_copy(update={"to": v(request.to)})
    if isinstance(request, TokenTransfer):
        token = v(request.token)
        _check_decimals(adapter, token, request.decimals)
        return request.model_copy(update={"to": v(request.to), "token": token})
    if isinstance(request, Approve):
        token = v(request.token)
        _check_decimals(adapter, token, request.decimals)
        return request.model_copy(update={"token": token, "spender": v(request.spender)})
    if isinstance(request, ContractCall):
        _refuse_disguised_transfer(adapter, v(request.to), request.data)
        accounts = tuple(
            AccountSpec(pubkey=v(a.pubkey), is_signer=a.is_signer, is_writable=a.is_writable)
            for a in request.accounts
        )
        return request.model_copy(update={"to": v(request.to), "accounts": accounts})
    if not batch_supported(adapter):
        raise InvalidInputError(
            f"BATCH is not supported on {adapter.chain}: send the requests one by one",
            field="type",
        )
    items = tuple(normalize_request(adapter, item) for item in request.requests)
    return request.model_copy(update={"requests": items})


def _check_decimals(adapter: ChainAdapter, token: str, stated: int | None) -> None:
    """Decimals a request states must agree with the chain's (never trusted otherwise:
    prices, tiers and human units use the chain's or ALLOWED_TOKENS')."""
    if stated is None:
        return
    reader = getattr(adapter, "token_decimals", None)
    if not callable(reader):
        return
    actual = reader(token)
    if isinstance(actual, int) and actual != stated:
        raise InvalidInputError(
            f"decimals: the request says {stated} but token {token} has {actual} decimals on chain",
            field="decimals",
        )


def _refuse_disguised_transfer(adapter: ChainAdapter, to: str, data: bytes) -> None:
    """A CONTRACT_CALL may not do what TokenTransfer / Transfer / Approve do: those carry
    budgets and approval limits that a raw call would bypass. Which calls do is the adapter's
    knowledge (:class:`~waiaas.chains.base.SupportsCallGuard`)."""
    refused = call_refusal(adapter, to, data)
    if refused is not None:
        field, message = refused
        raise InvalidInputError(message, field=field)


def spend_by_asset(request: Request) -> dict[str, int]:
    """What the request takes out of the wallet, per asset (``"native"`` or token address).

    Approvals spend nothing by themselves (APPROVE_AMOUNT_LIMIT / APPROVED_SPENDERS bound them).
    """
    out: dict[str, int] = {}

    def add(asset: str, amount: int) -> None:
        if amount:
            out[asset] = out.get(asset, 0) + amount

    def visit(req: Any) -> None:
        if isinstance(req, Transfer):
            add(NATIVE, req.amount)
        elif isinstance(req, TokenTransfer):
            add(req.token, req.amount)
        elif isinstance(req, ContractCall):
            add(NATIVE, req.value)
        elif isinstance(req, Batch):
            for item in req.requests:
                visit(item)

    visit(request)
    return out


def summary(request: Request) -> tuple[int | None, str | None, str]:
    """``(amount, to_address, asset)`` for the transaction row's columns."""
    if isinstance(request, Transfer):
        return request.amount, request.to, NATIVE
    if isinstance(request, TokenTransfer):
        return request.amount, request.to, request.token
    if isinstance(request, ContractCall):
        return request.value, request.to, NATIVE
    if isinstance(request, Approve):
        return request.amount, request.spender, request.token
    spent = spend_by_asset(request)
    native = spent.get(NATIVE)
    if len(spent) == 1 and native is None:
        ((asset, amount),) = spent.items()
        return amount, None, asset
    return native, None, NATIVE


def tx_type(request: Request) -> TxType:
    """The request's type."""
    return TxType(request.type)
