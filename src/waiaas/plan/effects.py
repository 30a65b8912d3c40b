"""Effects: what a plan does to money and authority, decoded from its bytes.

Policies judge these, whatever the request said it was. Every amount is an ``int`` of base
units (lamports, wei, token units). :func:`decode_plan` is pure: it reads only the plan and,
when given, an :class:`AccountLookup` the adapter supplies (token account -> mint and owner).

Decoding rules (see ``docs/design.md``, "Plans and effects", for the full table):

* Every instruction / call yields at least one effect; nothing is dropped. An instruction of
  a program the decoder does not know, or one it does not model, is a :class:`ProgramCall`;
  EVM calldata with an unknown selector is a :class:`ContractCall`. Both are denied unless a
  contract whitelist names the program / contract.
* Known instructions encoded in a way the program still executes but that is not canonical
  (trailing bytes, dirty ABI padding, short calldata that the EVM zero-pads) yield the effect
  *as the most lenient program would execute it* plus a ``ProgramCall``/``ContractCall`` with
  ``malformed=True``. Known instructions the program would reject (too short, missing
  accounts) yield only the ``malformed`` call. Nothing is ever under-counted, and the
  malformed call is refused by default.

Example::

    effects = decode_plan(plan, lookup=adapter.account_lookup())
    for effect in effects:
        if isinstance(effect, NativeTransfer):
            ...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, Protocol, Union, runtime_checkable

from waiaas.errors import InvalidInputError, WaiaasError

__all__ = [
    "CONTRACT_CREATION",
    "AccountClose",
    "AccountFunding",
    "AccountLookup",
    "AuthorityChange",
    "ContractCall",
    "ContractLookup",
    "Effect",
    "FeeEffect",
    "Memo",
    "NativeTransfer",
    "ProgramCall",
    "TokenAccountRentLookup",
    "TokenApproval",
    "TokenTransfer",
    "decode_plan",
    "effects_from_json",
    "effects_to_json",
]

CONTRACT_CREATION: Final = "contract-creation"
"""The ``contract`` / ``destination`` of effects of an EVM transaction without ``to``."""


@dataclass(frozen=True)
class NativeTransfer:
    """Native coin (lamports / wei) leaving ``source`` for ``destination``.

    On Solana ``source`` may be an account the agent controls without being it (e.g. a nonce
    account it withdraws from); count every native transfer against native budgets.
    """

    source: str
    destination: str
    amount: int


@dataclass(frozen=True)
class AccountFunding:
    """Lamports ``source`` puts into a new ``account`` (account creation, token-account rent).

    ``purpose`` is one of ``"create_account"``, ``"create_account_with_seed"`` and
    ``"token_account_rent"``. Rent is an upper bound: it is charged only when the account does
    not exist yet (and only its shortfall when the address already holds lamports).
    """

    source: str
    account: str
    amount: int
    purpose: str


@dataclass(frozen=True)
class FeeEffect:
    """The Solana prioritisation fee the compute-budget instructions set (lamports).

    The request chooses it, so it is spending like any other (tiers, per-request caps and
    budgets). The signature fee (5,000 lamports per signature) is not in the plan: the
    pipeline passes it, and on EVM the gas limit times ``maxFeePerGas``, to the evaluator
    as ``network_fee``, which the rolling budgets and session totals count.
    """

    payer: str
    amount: int


@dataclass(frozen=True)
class TokenTransfer:
    """Tokens moving from ``source_account`` to ``destination_account``.

    Attributes:
        token: the mint (Solana) / token contract (EVM); ``None`` when an SPL ``Transfer``
            names no mint and the source account could not be looked up.
        source_account: the token account debited (Solana) / the holder (EVM).
        destination_account: the token account credited (Solana) / the recipient (EVM).
        destination_owner: the wallet owning ``destination_account`` (Solana, when known; the
            recipient itself on EVM).
        amount: base units.
        authority: who authorises the debit (owner or delegate; on EVM the sender).
    """

    token: str | None
    source_account: str
    destination_account: str
    destination_owner: str | None
    amount: int
    authority: str


@dataclass(frozen=True)
class TokenApproval:
    """``spender`` may move up to ``amount`` base units of ``token`` out of ``owner_account``.

    Attributes:
        token: the mint / token contract (``None`` when an SPL ``Approve`` names no mint and
            the account could not be looked up).
        owner_account: the token account (Solana) / token holder (EVM) the allowance is on.
        spender: the delegate / spender.
        amount: base units.
        kind: ``"approve"`` (sets the allowance), ``"increase"`` (adds ``amount`` to it,
            ERC-20 ``increaseAllowance``) or ``"permit"`` (EIP-2612, the holder's signature).
    """

    token: str | None
    owner_account: str
    spender: str
    amount: int
    kind: str = "approve"


@dataclass(frozen=True)
class AuthorityChange:
    """Control of ``account`` changes hands.

    ``kind`` names what changes: the SPL authority types (``"mint_tokens"``,
    ``"freeze_account"``, ``"account_owner"``, ``"close_account"``, Token-2022 ones),
    ``"revoke_delegate"`` (SPL ``Revoke``; ``new_authority`` is ``None``), ``"system_assign"``
    (System ``Assign``/``AssignWithSeed``/``AllocateWithSeed``: the account's owner program
    becomes ``new_authority``) and ``"nonce_authority"``. ``new_authority`` ``None`` removes it.
    """

    account: str
    new_authority: str | None
    kind: str


@dataclass(frozen=True)
class AccountClose:
    """Token account ``account`` is closed; its lamports (rent) go to ``destination``."""

    account: str
    destination: str
    authority: str


@dataclass(frozen=True)
class ContractCall:
    """EVM code runs at ``contract`` and the decoder cannot say what it does.

    Attributes:
        contract: the called address (:data:`CONTRACT_CREATION` for a deployment).
        selector: ``"0x"`` + the first 4 bytes of calldata; ``None`` without 4 bytes.
        value: wei sent with the call (also emitted as a :class:`NativeTransfer`).
        method: the method's signature when the selector is a well-known one.
        malformed: the calldata has a known token selector but non-canonical ABI arguments;
            the token effect as a lenient contract would execute it is emitted too. A policy
            should refuse it even for a whitelisted contract.
    """

    contract: str
    selector: str | None
    value: int
    method: str | None
    malformed: bool = False


@dataclass(frozen=True)
class ProgramCall:
    """A Solana instruction the decoder does not turn into money effects.

    Attributes:
        program: the program id.
        accounts: the accounts passed, in order.
        data_prefix: ``"0x"`` + hex of the first 8 bytes of data (an Anchor discriminator).
        method: the instruction's name when the program is known (``"closeLookupTable"``).
        malformed: a known program's instruction that is not canonically encoded (see the
            module docstring). A policy should refuse it even for a whitelisted program.
    """

    program: str
    accounts: tuple[str, ...]
    data_prefix: str
    method: str | None = None
    malformed: bool = False


@dataclass(frozen=True)
class Memo:
    """A memo the transaction records on chain."""

    text: str


Effect = Union[  # noqa: UP007 - a runtime alias that works on Python 3.11
    NativeTransfer,
    AccountFunding,
    FeeEffect,
    TokenTransfer,
    TokenApproval,
    AuthorityChange,
    AccountClose,
    ContractCall,
    ProgramCall,
    Memo,
]
"""Any effect."""


@runtime_checkable
class AccountLookup(Protocol):
    """Reads the decoder needs from the chain, supplied by the adapter.

    Implementations may raise :class:`~waiaas.errors.ChainError`; the decoder lets it through.
    """

    def token_account(self, address: str) -> tuple[str, str] | None:
        """``(mint, owner)`` of SPL token account ``address``; ``None`` if not one / missing."""
        ...


@runtime_checkable
class ContractLookup(Protocol):
    """Optional extra for EVM lookups: whether an address holds code."""

    def is_contract(self, address: str) -> bool | None:
        """True when ``address`` has code, False when not, ``None`` when unknown."""
        ...


@runtime_checkable
class TokenAccountRentLookup(Protocol):
    """Optional extra for Solana lookups: the exact rent of a new token account for a mint."""

    def token_account_rent(self, mint: str, token_program: str) -> int | None:
        """Lamports an associated token account for ``mint`` needs; ``None`` when unknown."""
        ...


def decode_plan(plan: Any, *, lookup: AccountLookup | None = None) -> tuple[Effect, ...]:
    """Every effect of ``plan``, in instruction order.

    Args:
        plan: a :class:`~waiaas.plan.SolanaPlan` or :class:`~waiaas.plan.EvmPlan`.
        lookup: resolves token accounts to (mint, owner), and optionally EVM code presence
            and exact token-account rent. Without it, mints of SPL ``Transfer``/``Approve`` and
            destination owners may be ``None``.

    Raises:
        InvalidInputError: ``plan`` is not a plan.
        ChainError: the lookup failed (retry later).

    Example::

        effects = decode_plan(plan_of(unsigned), lookup=adapter.account_lookup())
    """
    from waiaas.plan import _evm, _solana
    from waiaas.plan.model import EvmPlan, SolanaPlan

    try:
        if isinstance(plan, SolanaPlan):
            return _solana.decode(plan, lookup)
        if isinstance(plan, EvmPlan):
            return _evm.decode(plan, lookup)
    except WaiaasError:
        raise
    except Exception as exc:  # a decoder bug must fail closed, never pass as "no effects"
        raise InvalidInputError(
            f"the plan could not be decoded ({type(exc).__name__})", field="plan"
        ) from exc
    raise InvalidInputError("plan must be a SolanaPlan or an EvmPlan", field="plan")


# --------------------------------------------------------------------------- JSON

_KINDS: Final[dict[str, type[Any]]] = {
    "native_transfer": NativeTransfer,
    "account_funding": AccountFunding,
    "fee": FeeEffect,
    "token_transfer": TokenTransfer,
    "token_approval": TokenApproval,
    "authority_change": AuthorityChange,
    "account_close": AccountClose,
    "contract_call": ContractCall,
    "program_call": ProgramCall,
    "memo": Memo,
}
_KIND_OF: Final = {cls: kind for kind, cls in _KINDS.items()}
_INT_FIELDS: Final = frozenset({"amount", "value"})
_OPTIONAL_FIELDS: Final = frozenset(
    {"token", "destination_owner", "new_authority", "selector", "method"}
)


def effects_to_json(effects: Iterable[Effect]) -> list[dict[str, Any]]:
    """JSON-able dicts (``{"effect": "native_transfer", ...}``; amounts as decimal strings).

    Raises:
        InvalidInputError: an item is not an effect.

    Example::

        effects_to_json([Memo("hi")])   # [{"effect": "memo", "text": "hi"}]
    """
    out: list[dict[str, Any]] = []
    for effect in effects:
        kind = _KIND_OF.get(type(effect))
        if kind is None:
            raise InvalidInputError("not an effect", field="effects")
        item: dict[str, Any] = {"effect": kind}
        for f in fields(effect):
            value = getattr(effect, f.name)
            if f.name in _INT_FIELDS:
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            item[f.name] = value
        out.append(item)
    return out


def effects_from_json(data: Sequence[Mapping[str, Any]]) -> tuple[Effect, ...]:
    """The inverse of :func:`effects_to_json`, strict (unknown kinds / keys refused).

    Raises:
        InvalidInputError: anything malformed.
    """
    from waiaas.plan._encoding import parse_decimal

    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise InvalidInputError("effects must be a list", field="effects")
    out: list[Effect] = []
    for index, item in enumerate(data):
        where = f"effects[{index}]"
        if not isinstance(item, Mapping) or item.get("effect") not in _KINDS:
            raise InvalidInputError(f"{where} has no known effect type", field=where)
        cls = _KINDS[item["effect"]]
        names = {f.name for f in fields(cls)}
        if set(item) - {"effect"} != names:
            raise InvalidInputError(f"{where} has missing or unexpected keys", field=where)
        kwargs: dict[str, Any] = {}
        for name in names:
            value = item[name]
            if name in _INT_FIELDS:
                value = parse_decimal(value, f"{where}.{name}")
            elif name == "accounts":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise InvalidInputError(f"{where}.accounts must be strings", field=where)
                value = tuple(value)
            elif name == "malformed":
                if not isinstance(value, bool):
                    raise InvalidInputError(f"{where}.malformed must be a bool", field=where)
            elif not isinstance(value, str) and not (value is None and name in _OPTIONAL_FIELDS):
                raise InvalidInputError(f"{where}.{name} must be a string", field=where)
            kwargs[name] = value
        out.append(cls(**kwargs))
    return tuple(out)
