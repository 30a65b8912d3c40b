"""Human text for effects: what the owner reads before approving.

Every line names full addresses (never shortened: a look-alike address differs somewhere in
the middle), amounts exactly in human units with the symbol (``0.5 SOL``, ``100 USDC``) plus
the base units when the token is unknown, and every call with its decoded method or raw
selector. Text that comes from the chain or the agent (memos, symbols) is quoted with JSON
escapes, so it can never forge a line, a control character or a right-to-left override.

Example::

    lines = describe_effects(effects, chain="solana", token_info=lambda t: (6, "USDC"))
    # ["send 0.5 SOL from 7Xf...full to 9xQe...full", ...]
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Final

from waiaas import _display as _d
from waiaas.errors import InvalidInputError
from waiaas.plan.effects import (
    CONTRACT_CREATION,
    AccountClose,
    AccountFunding,
    AuthorityChange,
    ContractCall,
    Effect,
    FeeEffect,
    Memo,
    NativeTransfer,
    ProgramCall,
    TokenApproval,
    TokenTransfer,
)

__all__ = ["NATIVE_UNITS", "describe_effect", "describe_effects", "format_units"]

NATIVE_UNITS: Final[dict[str, tuple[int, str]]] = {
    chain: (places, _d.NATIVE_SYMBOLS[chain]) for chain, places in _d.NATIVE_DECIMALS.items()
}
"""Default ``(decimals, symbol)`` of the native coin of the shipped chain families (callers
pass an adapter's own as ``native=``)."""

TokenInfo = Callable[[str], "tuple[int, str] | None"]

_SAFE_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}")


def format_units(amount: int, decimals: int) -> str:
    """``amount`` base units as an exact decimal string (``format_units(1500, 3) == "1.5"``).

    Raises:
        InvalidInputError: a negative ``decimals`` or a non-int.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidInputError("amount must be an int", field="amount")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 255:
        raise InvalidInputError("decimals must be an int in 0..255", field="decimals")
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    if not decimals or not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}." + f"{frac:0{decimals}d}".rstrip("0")


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)


def _symbol(symbol: str) -> str:
    return symbol if _SAFE_SYMBOL.fullmatch(symbol) else _quote(symbol)


class _Describer:
    def __init__(self, chain: str, token_info: TokenInfo, native: tuple[int, str]) -> None:
        self.chain = chain
        self.token_info = token_info
        self.native = native

    def native_amount(self, amount: int) -> str:
        decimals, symbol = self.native
        return f"{format_units(amount, decimals)} {_symbol(symbol)}"

    def token_amount(self, token: str | None, amount: int) -> str:
        if token is None:
            return f"{amount} base units of an unresolved token"
        info = self.token_info(token)
        if info is None:
            return f"{amount} base units of token {token}"
        decimals, symbol = info
        return f"{format_units(amount, decimals)} {_symbol(symbol)} (token {token})"

    def token_transfer(self, effect: TokenTransfer) -> str:
        owner = (
            f" (owner {effect.destination_owner})"
            if effect.destination_owner and effect.destination_owner != effect.destination_account
            else ""
        )
        via = (
            ""
            if effect.authority == effect.source_account
            else f", authorised by {effect.authority}"
        )
        return (
            f"transfer {self.token_amount(effect.token, effect.amount)} from "
            f"{effect.source_account} to {effect.destination_account}{owner}{via}"
        )

    def approval(self, effect: TokenApproval) -> str:
        amount = self.token_amount(effect.token, effect.amount)
        if effect.kind == "increase":
            return (
                f"increase the allowance of spender {effect.spender} by {amount} "
                f"on {effect.owner_account}"
            )
        if effect.kind == "permit":
            return (
                f"submit a permit letting spender {effect.spender} spend {amount} "
                f"of holder {effect.owner_account}"
            )
        return f"approve spender {effect.spender} to spend {amount} from {effect.owner_account}"

    @staticmethod
    def authority(effect: AuthorityChange) -> str:
        if effect.kind == "revoke_delegate":
            return f"revoke the delegate of token account {effect.account}"
        if effect.kind == "system_assign":
            return f"hand account {effect.account} over to program {effect.new_authority}"
        target = effect.new_authority if effect.new_authority else "nobody (removed)"
        return f"set the {effect.kind} authority of {effect.account} to {target}"

    def contract_call(self, effect: ContractCall) -> str:
        if effect.contract == CONTRACT_CREATION:
            head = "deploy a new contract"
        else:
            head = f"call contract {effect.contract}"
        if effect.contract == CONTRACT_CREATION:
            what = ""
        elif effect.method and effect.selector:
            what = f" method {effect.method} (selector {effect.selector})"
        elif effect.method:
            what = f" {effect.method}"
        elif effect.selector:
            what = f" unknown method, selector {effect.selector}"
        else:
            what = ""
        value = f" sending {self.native_amount(effect.value)}" if effect.value else ""
        bad = " with MALFORMED arguments" if effect.malformed else ""
        return f"{head}{what}{value}{bad}"

    def line(self, effect: Effect) -> str:
        if isinstance(effect, NativeTransfer):
            to = "a new contract" if effect.destination == CONTRACT_CREATION else effect.destination
            return f"send {self.native_amount(effect.amount)} from {effect.source} to {to}"
        if isinstance(effect, AccountFunding):
            what = {
                "token_account_rent": "token account rent",
                "create_account": "new account",
                "create_account_with_seed": "new account (with seed)",
            }.get(effect.purpose, effect.purpose)
            return (
                f"pay {self.native_amount(effect.amount)} ({what}, at most) from "
                f"{effect.source} into account {effect.account}"
            )
        if isinstance(effect, FeeEffect):
            return f"pay a priority fee of {self.native_amount(effect.amount)} from {effect.payer}"
        if isinstance(effect, TokenTransfer):
            return self.token_transfer(effect)
        if isinstance(effect, TokenApproval):
            return self.approval(effect)
        if isinstance(effect, AuthorityChange):
            return self.authority(effect)
        if isinstance(effect, AccountClose):
            return (
                f"close account {effect.account}, sending its lamports to "
                f"{effect.destination} (authority {effect.authority})"
            )
        if isinstance(effect, ContractCall):
            return self.contract_call(effect)
        if isinstance(effect, ProgramCall):
            what = f" {effect.method}" if effect.method else ""
            bad = " (MALFORMED instruction)" if effect.malformed else ""
            accounts = ", ".join(effect.accounts) if effect.accounts else "none"
            return (
                f"call program {effect.program}{what}{bad} with data starting "
                f"{effect.data_prefix} and accounts [{accounts}]"
            )
        if isinstance(effect, Memo):
            return f"memo {_quote(effect.text)}"
        raise InvalidInputError(f"not an effect: {type(effect).__name__}", field="effects")


def describe_effect(
    effect: Effect,
    *,
    chain: str,
    token_info: TokenInfo,
    native: tuple[int, str] | None = None,
) -> str:
    """One line for one effect (see :func:`describe_effects`)."""
    return describe_effects([effect], chain=chain, token_info=token_info, native=native)[0]


def describe_effects(
    effects: Iterable[Effect],
    *,
    chain: str,
    token_info: TokenInfo,
    native: tuple[int, str] | None = None,
) -> list[str]:
    """One line per effect, for the owner's approval message.

    Args:
        effects: what :func:`~waiaas.plan.decode_plan` returned.
        chain: ``"solana"`` or ``"evm"`` (picks the native coin's units).
        token_info: ``token -> (decimals, symbol)`` or ``None`` when unknown (then the base
            units and the full token address are shown).
        native: ``(decimals, symbol)`` of the native coin when not SOL / ETH (e.g. ``(18,
            "POL")``).

    Raises:
        InvalidInputError: an unknown chain without ``native``, or an item that is not an effect.

    Example::

        describe_effects([NativeTransfer(a, b, 500_000_000)], chain="solana",
                         token_info=lambda t: None)
        # ["send 0.5 SOL from <a> to <b>"]
    """
    units = native if native is not None else NATIVE_UNITS.get(chain)
    if units is None:
        raise InvalidInputError(
            f"unknown chain {chain!r}: pass native=(decimals, symbol)", field="chain"
        )
    describer = _Describer(chain, token_info, units)
    return [describer.line(effect) for effect in effects]
