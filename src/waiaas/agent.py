"""The agent's side of a wallet: :class:`AgentHandle`, scoped to one session token.

An agent framework gets a handle from the host and never sees the :class:`~waiaas.Wallet`::

    handle = wallet.agent(token)
    handle.balance()                                   # Balance(... display='2 SOL')
    handle.transfer(to=dest, amount="0.05")            # human units, exact
    handle.dry_run(Transfer(to=dest, amount=10**9))    # what would happen (redacted, audited)
    handle.limits()                                    # what it may still do (redacted)

Everything on a handle acts as that session's agent: it cannot reach another agent's
balance or transactions, and nothing on it is an owner or operator action (no approval, no
policy change, no kill switch). A transaction of another agent is reported as not found,
so a handle cannot even learn that it exists.

Outcomes follow the wallet's one rule: a refusal raises (nothing was executed: bad input,
token refused, policy or session constraint denied...); an admitted transaction is returned
as a result whatever the chain did with it (``status`` CONFIRMED, FAILED with ``error``,
QUEUED...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from waiaas import _display as _d
from waiaas._validate import check_id
from waiaas.chains.base import native_asset_of
from waiaas.errors import InvalidInputError, StateError
from waiaas.policy.model import NATIVE, normalize_asset_key
from waiaas.types import Request, Tier, TokenTransfer, TransactionInfo, Transfer, TxStatus
from waiaas.units import format_units, parse_units

if TYPE_CHECKING:
    from waiaas.chains.base import ChainAdapter, FeeQuote
    from waiaas.policy import Explanation, PolicySpec
    from waiaas.services.agent_access import Judgement
    from waiaas.sessions import VerifiedSession
    from waiaas.wallet import TransactionResult, Wallet

__all__ = ["AgentHandle", "AgentLimits", "AssetInfo", "Balance"]

_MAX_SYMBOL = 16


class AgentPort(Protocol):
    """What a handle needs from the wallet besides its public methods (internal).

    ``Wallet.agent`` passes the wallet's implementation
    (:class:`waiaas.services.agent_access.AgentAccess`) to every handle it makes.
    """

    def verify(self, token: str) -> VerifiedSession:
        """The session ``token`` opens now; a refusal is recorded (AUTH_FAILED), then raised."""
        ...

    def applicable_policies(self, agent_id: str) -> list[PolicySpec]:
        """The enabled policies that apply to the agent."""
        ...

    def own_transaction(self, agent_id: str, tx_id: str) -> TransactionResult:
        """One of the agent's transactions as it may see it; another agent's is not found."""
        ...

    def judge(
        self, agent_id: str, request: Request, *, adapter: ChainAdapter, fee: FeeQuote | None
    ) -> Judgement:
        """``request`` judged for the agent as ``send`` would, nothing written."""
        ...


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """An asset an agent can hold: the native coin or a token.

    Attributes:
        asset: ``"native"`` or the token's address (mint / contract).
        symbol: ``"SOL"``, ``"ETH"``, a token symbol from ``ALLOWED_TOKENS``, or ``None``.
        decimals: the asset's decimals, or ``None`` when unknown.
    """

    asset: str
    symbol: str | None
    decimals: int | None

    def parse(self, amount: str | Decimal) -> int:
        """Whole units (``"0.05"`` / ``"0.05 SOL"``) to base units, exactly.

        Raises:
            InvalidInputError: a float, a bad decimal, too many decimals, or the decimals of
                this asset are unknown.
        """
        if self.decimals is None and self.asset == NATIVE:
            raise InvalidInputError(
                "the chain adapter does not name its native coin's decimals; give the amount "
                "in base units (send a Transfer)",
                field="amount",
            )
        if self.decimals is None:
            raise InvalidInputError(
                f"the decimals of token {self.asset} are unknown; give the amount in base "
                "units, or ask the owner to list the token in ALLOWED_TOKENS with its decimals",
                field="amount",
            )
        return parse_units(amount, self.decimals, symbol=self.symbol)

    def format(self, amount: int) -> str:
        """Base units rendered in whole units with the symbol (``"0.05 SOL"``)."""
        if self.decimals is None and self.asset == NATIVE:
            return f"{amount} base units of the native coin"
        if self.decimals is None:
            return f"{amount} base units of token {self.asset}"
        return format_units(amount, self.decimals, symbol=self.symbol or None)


@dataclass(frozen=True, slots=True)
class Balance:
    """One balance of the agent.

    Attributes:
        asset, symbol, decimals: what it is (see :class:`AssetInfo`).
        amount: base units (exact ``int``).
        display: ``amount`` in whole units with the symbol (``"2.5 SOL"``).
    """

    asset: str
    symbol: str | None
    decimals: int | None
    amount: int
    display: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able data; ``amount`` is a decimal string of base units."""
        return {
            "asset": self.asset,
            "symbol": self.symbol,
            "decimals": self.decimals,
            "amount": str(self.amount),
            "display": self.display,
        }


@dataclass(frozen=True, slots=True)
class AgentLimits:
    """What the session and the policies still allow the agent, redacted for the agent.

    What is left *now*, never how the rules are written: no policy thresholds (tier bounds,
    caps, budget limits), no list contents, no rule ids, no owner address. The session's own
    constraints are shown: the agent was given them with its token.

    Attributes:
        agent_id, chain, network: who and where.
        session_expires_at: when the session token stops working (Unix seconds).
        tx_types: the request types the session allows (``None``: any).
        max_per_transaction: per asset, the largest single request the session allows.
        session_remaining: per asset, what is left of the session's lifetime total.
        transactions_remaining: requests left in the session (``None``: no limit).
        native_max_now: the most one native transfer may move right now without being
            refused by a cap: the smallest of what the spending budgets have left, the
            policies' per-transaction caps, the session's per-transaction cap and what is
            left of its total (``0`` when the session may send no more transfers), in base
            units; ``None`` when nothing caps it. It does not depend on the tier: an amount
            up to it may still need a delay or the owner's approval (``dry_run`` says which),
            and other rules (recipients, time windows, rate limits) still apply.
        budgets: what is left of each rolling spending window for the native coin, the
            tightest per window: ``{"window": "24h", "remaining": "<base units>"}``, or
            ``{"window": "24h", "remaining_usd": "<dollars>"}`` for a budget in US dollars.
        restrictions: the types of the other rules in force (e.g. ``ALLOWED_ADDRESSES``),
            never their contents.

    Example::

        handle.limits().native_max_now       # 450000000
    """

    agent_id: str
    chain: str
    network: str
    session_expires_at: int
    tx_types: tuple[str, ...] | None
    max_per_transaction: Mapping[str, int] = field(default_factory=dict)
    session_remaining: Mapping[str, int] = field(default_factory=dict)
    transactions_remaining: int | None = None
    native_max_now: int | None = None
    budgets: tuple[Mapping[str, str], ...] = ()
    restrictions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able data; amounts are decimal strings of base units."""
        return {
            "agent_id": self.agent_id,
            "chain": self.chain,
            "network": self.network,
            "session_expires_at": self.session_expires_at,
            "tx_types": list(self.tx_types) if self.tx_types is not None else None,
            "max_per_transaction": {k: str(v) for k, v in self.max_per_transaction.items()},
            "session_remaining": {k: str(v) for k, v in self.session_remaining.items()},
            "transactions_remaining": self.transactions_remaining,
            "native_max_now": None if self.native_max_now is None else str(self.native_max_now),
            "budgets": [dict(b) for b in self.budgets],
            "restrictions": list(self.restrictions),
        }

    def __repr__(self) -> str:
        return _d.short_repr(
            "AgentLimits",
            [
                ("agent_id", self.agent_id),
                ("chain", self.chain),
                ("network", self.network),
                ("native_max_now", self.native_max_now),
                ("budgets", [dict(b) for b in self.budgets] or None),
                ("max_per_transaction", dict(self.max_per_transaction) or None),
                ("session_remaining", dict(self.session_remaining) or None),
                ("transactions_remaining", self.transactions_remaining),
                ("tx_types", self.tx_types),
                ("session_expires_at", self.session_expires_at),
                ("restrictions", self.restrictions or None),
            ],
        )

    __str__ = __repr__

    def _repr_html_(self) -> str:
        def amounts(values: Mapping[str, int]) -> str | None:
            return ", ".join(f"{k}: {v}" for k, v in sorted(values.items())) or None

        windows = ", ".join(
            f"{b['window']}: {b.get('remaining', b.get('remaining_usd', ''))}"
            + (" USD" if "remaining_usd" in b else "")
            for b in self.budgets
        )
        return _d.fields_html(
            "Agent limits (what is left now)",
            [
                ("agent", self.agent_id),
                ("chain", f"{self.chain} {self.network}"),
                (
                    "native max now (base units)",
                    "no cap" if self.native_max_now is None else str(self.native_max_now),
                ),
                ("budgets left (base units)", windows or None),
                ("session max per transaction", amounts(self.max_per_transaction)),
                ("session total left", amounts(self.session_remaining)),
                ("transactions left", self.transactions_remaining),
                ("transaction types", ", ".join(self.tx_types) if self.tx_types else None),
                ("session expires", _d.fmt_time(self.session_expires_at)),
                ("other rules in force", ", ".join(self.restrictions) or None),
            ],
        )


class AgentHandle:
    """One session's view of the wallet: what an agent may do, and nothing else.

    Get one with :meth:`waiaas.Wallet.agent`. Thread-safe (it holds no state besides the
    token and the ids the token names). ``repr()`` never shows the token.

    Attributes:
        agent_id: the agent the session belongs to.
        session_id: the session.
        chain, network: the agent's chain family and network.
        address: the agent's public address (where to send it funds).
    """

    def __init__(self, wallet: Wallet, token: str, port: AgentPort) -> None:
        """Verify ``token`` now. Made by :meth:`waiaas.Wallet.agent`, which passes the
        wallet's internal port (``port``: what a handle reads besides the wallet's public
        methods).

        Raises:
            InvalidInputError: the token is not a non-empty string.
            AuthError (TokenExpiredError, TokenRevokedError): the token was refused.
        """
        if not isinstance(token, str) or not token:
            raise InvalidInputError("token must be a non-empty string", field="token")
        self._wallet = wallet
        self._port = port
        self._token = token
        verified = self._verify()
        self.agent_id: str = verified.agent_id
        self.session_id: str = verified.session_id
        self.chain: str = verified.chain
        self.network: str = verified.network
        self.address: str = wallet.get_agent(verified.agent_id).public_key

    def __repr__(self) -> str:
        return (
            f"AgentHandle(agent_id={self.agent_id!r}, chain={self.chain!r}, "
            f"network={self.network!r}, token='***')"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an AgentHandle holds a session token and cannot be pickled")

    @property
    def wallet_path(self) -> str:
        """The wallet file this handle acts on (for logs; never the token)."""
        return str(self._wallet.path)

    def _verify(self) -> VerifiedSession:
        """Every call checks the token again: the session manager's remembered verification
        (one statement re-reads the session and agent rows), no unit of work of its own."""
        return self._port.verify(self._token)

    # ------------------------------------------------------------------ assets and units

    def _adapter(self) -> ChainAdapter:
        return self._wallet.network_adapter(self.chain, self.network)

    def _listed_tokens(self) -> list[Any]:
        """The ALLOWED_TOKENS entries that apply to this agent (address, symbol, decimals)."""
        from waiaas.policy.rules import AllowedTokensRules

        out: dict[str, Any] = {}
        for spec in self._port.applicable_policies(self.agent_id):
            if isinstance(spec.rules, AllowedTokensRules):
                for entry in spec.rules.tokens:
                    out.setdefault(entry.address, entry)
        return list(out.values())

    def asset(self, asset: str = NATIVE) -> AssetInfo:
        """Resolve ``asset``: ``"native"``, the native symbol (``"SOL"``), a symbol listed in
        ``ALLOWED_TOKENS``, or a token address; decimals come from the chain or the list.

        Raises:
            InvalidInputError / InvalidAddressError: unknown symbol or invalid address.
            ChainError: the chain could not be asked for the token's decimals.

        Example::

            handle.asset("USDC")     # AssetInfo(asset='EPjF...', symbol='USDC', decimals=6)
        """
        if not isinstance(asset, str) or not asset.strip():
            raise InvalidInputError("asset must be 'native', a symbol or an address", field="asset")
        text = asset.strip()
        native = native_asset_of(self._adapter())  # None: the adapter does not say
        if text.lower() == NATIVE or (native and text.upper() == native.symbol.upper()):
            if native is None:
                return AssetInfo(NATIVE, None, None)
            return AssetInfo(NATIVE, native.symbol, native.decimals)
        listed = self._listed_tokens()
        if len(text) <= _MAX_SYMBOL:
            by_symbol = [e for e in listed if e.symbol and e.symbol.upper() == text.upper()]
            if len(by_symbol) == 1:
                entry = by_symbol[0]
                return AssetInfo(entry.address, entry.symbol, self._decimals(entry))
            if len(by_symbol) > 1:
                raise InvalidInputError(
                    f"several listed tokens use the symbol {text!r}; give the token address",
                    field="asset",
                )
            known = sorted({e.symbol for e in listed if e.symbol})
            raise InvalidInputError(
                f"unknown asset {text!r}: use 'native', a token address, or a listed symbol "
                f"({', '.join(known) or 'none listed'})",
                field="asset",
            )
        address = self._adapter().validate_address(text)
        key = normalize_asset_key(address)
        for entry in listed:
            if normalize_asset_key(entry.address) == key:
                return AssetInfo(address, entry.symbol, self._decimals(entry))
        return AssetInfo(address, None, self._chain_decimals(address))

    def _decimals(self, entry: Any) -> int | None:
        if entry.decimals is not None:
            return int(entry.decimals)
        return self._chain_decimals(entry.address)

    def _chain_decimals(self, address: str) -> int | None:
        reader = getattr(self._adapter(), "token_decimals", None)
        if reader is None:
            return None
        return int(reader(address))

    def parse_units(self, amount: str | Decimal, asset: str = NATIVE) -> int:
        """``"0.05"`` or ``"0.05 SOL"`` of ``asset`` in base units, exactly (never floats).

        Raises:
            InvalidInputError: a float, a malformed or over-precise amount, an unknown asset.

        Example::

            handle.parse_units("0.05 SOL")         # 50_000_000
            handle.parse_units("12.5", "USDC")     # 12_500_000
        """
        return self.asset(asset).parse(amount)

    def format_units(self, amount: int, asset: str = NATIVE) -> str:
        """Base units of ``asset`` in whole units with its symbol (``"0.05 SOL"``).

        Raises:
            InvalidInputError: ``amount`` is not an int >= 0, or an unknown asset.
        """
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise InvalidInputError("amount must be an int of base units >= 0", field="amount")
        return self.asset(asset).format(amount)

    # ------------------------------------------------------------------ reading

    def balance(self, asset: str = NATIVE) -> Balance:
        """The agent's balance of ``asset`` (default: the native coin).

        Raises:
            AuthError: the token is no longer valid.
            InvalidInputError / InvalidAddressError: unknown asset.
            ChainError: the chain could not be asked.

        Example::

            handle.balance().display           # "2 SOL"
            handle.balance("USDC").amount      # 12_500_000
        """
        self._verify()
        info = self.asset(asset)
        adapter = self._adapter()
        if info.asset == NATIVE:
            amount = int(adapter.get_balance(self.address))
        else:
            amount = int(adapter.get_token_balance(self.address, info.asset))
        return Balance(info.asset, info.symbol, info.decimals, amount, info.format(amount))

    def balances(self) -> list[Balance]:
        """The native balance, then one per token listed for the agent in ``ALLOWED_TOKENS``.

        Raises:
            AuthError, ChainError.

        Example::

            for b in handle.balances(): print(b.display)
        """
        out = [self.balance()]
        for entry in self._listed_tokens():
            out.append(self.balance(entry.address))
        return out

    def get_transaction(self, tx_id: str) -> TransactionResult:
        """One of the agent's own transactions (another agent's is "not found"), as the
        agent may see it: the policy decision redacted, a denial's ``error`` reduced to the
        deciding rule and figure.

        Raises:
            AuthError, InvalidInputError, NotFoundError.

        Example::

            handle.get_transaction(result.id).status
        """
        self._verify()
        return self._own(check_id(tx_id, "tx_id"))

    def _own(self, tx_id: str) -> TransactionResult:
        """One of the agent's transactions as the agent may see it (redacted decision and
        denial text); another agent's, or none, is "not found"."""
        return self._port.own_transaction(self.agent_id, tx_id)

    def transactions(
        self,
        *,
        status: TxStatus | str | None = None,
        limit: int = 20,
        before: str | None = None,
    ) -> list[TransactionInfo]:
        """The agent's own transactions, newest first (page with ``before``).

        Raises:
            AuthError, InvalidInputError.

        Example::

            queued = handle.transactions(status="QUEUED")
        """
        self._verify()
        listed = self._wallet.list_transactions(
            agent_id=self.agent_id, status=status, limit=limit, before=before
        )
        # A policy denial's error names every reason for the owner; the agent sees its own.
        return [
            tx.model_copy(update={"error": self._own(tx.id).error})
            if tx.error and tx.error.startswith("POLICY_DENIED")
            else tx
            for tx in listed
        ]

    def _transfer_fee(self) -> FeeQuote | None:
        """The network fee a native transfer pays now (built, never signed), which the
        budgets and the session's total count besides the amount; ``None`` when the chain
        cannot say."""
        from waiaas.pipeline import plans

        adapter = self._adapter()
        prepared = plans.prepare_or_defer(
            adapter, Transfer(to=self.address, amount=1), self.address
        )
        return prepared.fee

    def _policy_view(
        self, fee: FeeQuote | None
    ) -> tuple[tuple[Mapping[str, str], ...], int | None, tuple[str, ...]]:
        """What the policies leave the agent now: the native budget windows (what is left,
        tightest per window), the most one native transfer may move without a cap refusing
        it (``None``: no policy cap), and the types of the other rules in force.

        One native transfer of one whole coin is evaluated the way ``send`` would evaluate
        it (same policies, usage windows and USD prices); only its budget figures are read.
        """
        from waiaas.policy.rules import SpendingLimitRules

        native = native_asset_of(self._adapter())
        one = 10 ** (native.decimals if native is not None else 0)
        probe = Transfer(to=self.address, amount=one)
        judged = self._port.judge(self.agent_id, probe, adapter=self._adapter(), fee=fee)
        decision, specs = judged.decision, judged.policies
        rules = {s.id: s.rules for s in specs}
        # over a cap, a rule with on_exceed="approval" asks for the owner instead of refusing;
        # without an owner (and no DELAY stand-in) that is a refusal too
        owner_less = not judged.has_owner and not judged.approval_stands_in

        def refuses(rule_id: str) -> bool:
            r = rules.get(rule_id)
            return not isinstance(r, SpendingLimitRules) or r.on_exceed == "deny" or owner_less

        caps: list[int] = []
        windows: dict[str, int] = {}
        for b in decision.budget:
            if b.asset != NATIVE:
                continue
            if b.window != "transaction":
                windows[b.window] = min(windows.get(b.window, b.remaining), b.remaining)
            if refuses(b.rule_id):
                # a rolling window must also hold the transfer's network fee
                held = decision.fees if b.window != "transaction" else 0
                caps.append(max(0, b.remaining - held))
        windows_usd: dict[str, Decimal] = {}
        for u in decision.budget_usd:
            if u.asset not in (NATIVE, "every asset"):
                continue
            if u.window != "transaction":
                windows_usd[u.window] = min(windows_usd.get(u.window, u.remaining), u.remaining)
            if refuses(u.rule_id) and u.requested > 0:
                # the probe moved one whole coin: ``requested`` is its USD price (a rolling
                # window holds the network fee too)
                most = _native_for_usd(u.remaining, u.requested, one)
                held = decision.fees if u.window != "transaction" else 0
                caps.append(max(0, most - held))
        budgets: list[Mapping[str, str]] = [
            {"window": w, "remaining": str(windows[w])} for w in _WINDOWS if w in windows
        ]
        budgets += [
            {"window": w, "remaining_usd": str(windows_usd[w])}
            for w in _WINDOWS
            if w in windows_usd
        ]
        restrictions = tuple(sorted({str(s.type) for s in specs} - {"SPENDING_LIMIT"}))
        return tuple(budgets), (min(caps) if caps else None), restrictions

    # ------------------------------------------------------------------ acting

    def send(self, request: Request | Mapping[str, Any]) -> TransactionResult:
        """Send a request (amounts in base units) through the pipeline as this agent.

        Raises (refusals; nothing was executed):
            InvalidInputError, AuthError, KillSwitchActiveError, AgentNotActiveError,
            ConstraintViolationError, PolicyDeniedError, KeystoreLockedError.

        Returns:
            The transaction: CONFIRMED, QUEUED (DELAY / APPROVAL) or FAILED with ``error``
            when the chain refused it.

        Example::

            result = handle.send(Transfer(to=dest, amount=50_000_000))
        """
        return self._wallet.send(self._token, request)

    def transfer_request(
        self, to: str, amount: str | Decimal, asset: str = NATIVE, *, memo: str | None = None
    ) -> Transfer | TokenTransfer:
        """Build the request for sending ``amount`` (whole units, a decimal string) of
        ``asset`` to ``to``.

        Raises:
            InvalidInputError: a float or malformed amount, an unknown asset.
        """
        info = self.asset(asset)
        base = info.parse(amount)
        if info.asset == NATIVE:
            return Transfer(to=to, amount=base, memo=memo)
        if memo is not None:
            raise InvalidInputError("a memo is only supported on native transfers", field="memo")
        return TokenTransfer(token=info.asset, to=to, amount=base, decimals=info.decimals)

    def transfer(
        self, to: str, amount: str | Decimal, asset: str = NATIVE, *, memo: str | None = None
    ) -> TransactionResult:
        """Send ``amount`` of ``asset`` in whole units (``"0.05"``, ``"0.05 SOL"``) to ``to``.

        Raises and returns as :meth:`send`.

        Example::

            handle.transfer(dest, "0.05")           # 0.05 SOL
            handle.transfer(dest, "12.5", "USDC")   # a listed token, by symbol
        """
        return self.send(self.transfer_request(to, amount, asset, memo=memo))

    def dry_run(self, request: Request | Mapping[str, Any]) -> Explanation:
        """What the policies would decide for ``request``, as the agent may see it: the
        outcome and the one figure that decides it (no thresholds, list contents or policy
        ids). One compact DRY_RUN audit row is written, and it counts toward RATE_LIMIT.

        Raises:
            InvalidInputError, AuthError.

        Example::

            preview = handle.dry_run(Transfer(to=dest, amount=10**9))
            preview.decision.tier, preview.hints
        """
        return self._wallet.dry_run(request, token=self._token)

    def cancel(self, tx_id: str) -> TransactionInfo:
        """Cancel one of the agent's own DELAY transactions while it waits (QUEUED).

        A transaction waiting for the owner's approval is the owner's to decide.

        Raises:
            AuthError, InvalidInputError, NotFoundError (not the agent's),
            StateError (not a waiting DELAY transaction).

        Example::

            handle.cancel(result.id)
        """
        tx = self.get_transaction(tx_id)
        if tx.tier != Tier.DELAY or tx.status not in (TxStatus.PENDING, TxStatus.QUEUED):
            raise StateError(
                f"transaction {tx.id} is {tx.status.value} ({tx.tier.value if tx.tier else '-'}); "
                "an agent can cancel only its own DELAY transactions while they wait",
                tx_id=tx.id,
                status=tx.status.value,
            )
        return self._wallet.cancel(tx.id, token=self._token)

    def limits(self) -> AgentLimits:
        """What the session and the policies still allow, redacted for the agent: what is
        left now (budgets, the session's own caps and counts, the most one native transfer
        may move), never the policies' thresholds, list contents or rule ids.

        Raises:
            AuthError: the token was refused.
            TamperDetectedError: a policy or the owner binding fails its MAC.

        Example::

            limits = handle.limits()
            limits.native_max_now     # 450000000: a larger transfer is refused now
            limits.budgets            # ({"window": "24h", "remaining": "2950000000"},)
        """
        verified = self._verify()
        constraints = verified.constraints
        usage = verified.usage
        per_tx = dict(constraints.max_amount_per_tx or {})
        remaining = {
            asset: max(0, total - usage.total(asset))
            for asset, total in (constraints.max_total_amount or {}).items()
        }
        left_count = (
            None
            if constraints.max_tx_count is None
            else max(0, constraints.max_tx_count - usage.tx_count)
        )
        tx_types = (
            tuple(t.value for t in constraints.allowed_tx_types)
            if constraints.allowed_tx_types is not None
            else None
        )
        fee = self._transfer_fee()
        budgets, policy_cap, restrictions = self._policy_view(fee)
        session_left = remaining.get(NATIVE)
        if session_left is not None:  # the session's total counts the fee as well
            session_left = max(0, session_left - (fee.amount if fee is not None else 0))
        caps = [v for v in (policy_cap, per_tx.get(NATIVE), session_left) if v is not None]
        if left_count == 0 or (tx_types is not None and "TRANSFER" not in tx_types):
            caps.append(0)  # the session may send no (more) transfers
        return AgentLimits(
            agent_id=self.agent_id,
            chain=self.chain,
            network=self.network,
            session_expires_at=verified.expires_at,
            tx_types=tx_types,
            max_per_transaction=per_tx,
            session_remaining=remaining,
            transactions_remaining=left_count,
            native_max_now=min(caps) if caps else None,
            budgets=budgets,
            restrictions=restrictions,
        )


_WINDOWS = ("24h", "7d")


def _native_for_usd(remaining_usd: Decimal, price_of_one: Decimal, one: int) -> int:
    """The most base units whose exact USD value stays within ``remaining_usd``, given the
    USD price of ``one`` base-unit multiple (one whole coin)."""
    from waiaas.policy.model import EXACT

    units = int(EXACT.divide(EXACT.multiply(remaining_usd, Decimal(one)), price_of_one))
    units = max(units, 0)
    # int() truncates; make the bound exact whatever the division rounded
    while (
        units > 0
        and EXACT.divide(EXACT.multiply(Decimal(units), price_of_one), one) > remaining_usd
    ):
        units -= 1
    while EXACT.divide(EXACT.multiply(Decimal(units + 1), price_of_one), one) <= remaining_usd:
        units += 1
    return units
