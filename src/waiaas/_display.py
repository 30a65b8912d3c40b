"""Renderings for people: short reprs, HTML for notebooks, and pandas/matplotlib plumbing.

Private. Pure (no I/O) and import-light: pandas and matplotlib are optional extras and are
imported only when a ``to_dataframe()`` or ``plot()`` is called, with an error that says
which extra to install.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "amount_cells",
    "badge",
    "enum_repr",
    "fields_html",
    "fmt_time",
    "frame",
    "human_amount",
    "require_pandas",
    "require_pyplot",
    "short",
    "short_repr",
    "table_html",
]

NATIVE = "native"
# The pure core's defaults for the shipped families' native coins (the one copy of them
# outside waiaas.chains.families, which the adapters declare; a test pins that they agree).
# The pure core reads them here because it may not import the chain layer.
NATIVE_DECIMALS = {"solana": 9, "evm": 18}
NATIVE_SYMBOLS = {"solana": "SOL", "evm": "ETH"}

# One look for every table: readable in light and dark notebook themes.
_STYLE = (
    "<style>.waiaas-t{border-collapse:collapse;font-size:12px;margin:2px 0}"
    ".waiaas-t th,.waiaas-t td{border:1px solid #8884;padding:2px 6px;text-align:left;"
    "vertical-align:top}.waiaas-t caption{text-align:left;font-weight:bold;padding:2px 0}"
    ".waiaas-b{border-radius:3px;padding:0 4px;color:#fff;font-weight:bold}</style>"
)
_COLOURS = {
    "CONFIRMED": "#2e7d32",
    "ACTIVE": "#2e7d32",
    "ALLOWED": "#2e7d32",
    "INSTANT": "#2e7d32",
    "NOTIFY": "#0277bd",
    "DELAY": "#ef6c00",
    "APPROVAL": "#6a1b9a",
    "QUEUED": "#ef6c00",
    "PENDING": "#757575",
    "EXECUTING": "#0277bd",
    "SUBMITTED": "#0277bd",
    "FAILED": "#c62828",
    "DENIED": "#c62828",
    "SUSPENDED": "#c62828",
    "TERMINATED": "#424242",
    "CANCELLED": "#757575",
    "EXPIRED": "#757575",
    "warning": "#ef6c00",
    "critical": "#c62828",
    "info": "#757575",
}


def enum_repr(self: Enum) -> str:
    """``TxStatus.CONFIRMED`` rather than ``<TxStatus.CONFIRMED: 'CONFIRMED'>``."""
    return f"{type(self).__name__}.{self.name}"


def plain(value: object) -> object:
    """An enum as its plain value; anything else unchanged."""
    return value.value if isinstance(value, Enum) else value


def short(text: str, keep: int = 10) -> str:
    """``0192f3c4a1…9be2f1`` for long ids, hashes and addresses (full text when short)."""
    if len(text) <= 2 * keep + 4:
        return text
    return f"{text[:keep]}…{text[-6:]}"


def short_repr(name: str, fields: Iterable[tuple[str, object]]) -> str:
    """``Name(a=1, status=CONFIRMED, to='9xQe…')``: enums plain, ``None`` left out,
    long strings shortened, so a repr fits on one line."""
    parts = []
    for key, value in fields:
        if value is None:
            continue
        value = plain(value)
        if isinstance(value, str) and key in _BARE:
            parts.append(f"{key}={value}")
        elif isinstance(value, str) and " " in value:  # a sentence: keep it readable
            parts.append(f"{key}={value if len(value) <= 100 else value[:97] + '...'!r}")
        elif isinstance(value, str):  # an id, hash or address
            parts.append(f"{key}={short(value)!r}")
        else:
            parts.append(f"{key}={value!r}")
    return f"{name}({', '.join(parts)})"


# Fields whose (enum) values print bare: status=CONFIRMED, not status='CONFIRMED'.
_BARE = frozenset(
    {"status", "tier", "type", "severity", "chain", "event", "event_type", "effect", "outcome"}
)


def fmt_time(ts: int | None) -> str:
    """``2023-11-14 22:13:20 UTC`` (empty for ``None``)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_amount(
    chain: str, asset: str | None, amount: int, decimals: int | None = None
) -> tuple[Decimal | None, str]:
    """The exact amount in whole units and its unit: ``(Decimal("0.05"), "SOL")``.

    Tokens are in whole units only when their decimals are known; otherwise the amount is
    ``None`` and the unit names the token (the base units stay available elsewhere).
    """
    if asset in (None, NATIVE) and chain in NATIVE_DECIMALS:
        return _exact(amount, NATIVE_DECIMALS[chain]), NATIVE_SYMBOLS[chain]
    if asset not in (None, NATIVE) and decimals is not None:
        return _exact(amount, decimals), str(asset)
    return None, "base units" if asset in (None, NATIVE) else str(asset)


# Enough digits for any amount of base units this library accepts, whatever the caller's
# decimal context says: the conversion is exact.
_EXACT = Context(prec=1000, Emin=-999_999, Emax=999_999)


def _exact(amount: int, decimals: int) -> Decimal:
    """``amount / 10**decimals`` as an exact Decimal, without trailing zeros."""
    value = Decimal(amount).scaleb(-decimals, _EXACT).normalize(_EXACT)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:  # 100, not 1E+2
        value = value.quantize(Decimal(1), context=_EXACT)
    return value


def _fmt_decimal(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def amount_cells(chain: str, asset: str | None, amount: int | None) -> str:
    """``0.05 SOL (50000000)`` for a cell; ``""`` for no amount."""
    if amount is None:
        return ""
    value, unit = human_amount(chain, asset, amount)
    if value is None:
        return f"{amount} base units of {short(unit)}" if unit != "base units" else str(amount)
    return f"{_fmt_decimal(value)} {unit} ({amount})"


def badge(value: object) -> str:
    """A coloured label for a status, tier or severity (escaped)."""
    text = str(plain(value))
    colour = _COLOURS.get(text)
    if colour is None:
        return html.escape(text)
    return f'<span class="waiaas-b" style="background:{colour}">{html.escape(text)}</span>'


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, _Raw):
        return value.html
    if isinstance(value, Mapping | list | tuple):
        text = json.dumps(value, default=str, separators=(", ", ": "))
        return html.escape(text if len(text) <= 160 else text[:157] + "...")
    return html.escape(str(plain(value)))


class _Raw:
    """Already-escaped HTML for a cell."""

    __slots__ = ("html",)

    def __init__(self, text: str) -> None:
        self.html = text


def raw(text: str) -> _Raw:
    """Mark ``text`` as HTML that is already safe (built from escaped parts)."""
    return _Raw(text)


def table_html(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, caption: str | None = None
) -> str:
    """An HTML table; every cell is escaped unless built with :func:`raw`."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f'{_STYLE}<table class="waiaas-t">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def fields_html(caption: str, pairs: Iterable[tuple[str, object]]) -> str:
    """A two-column key/value table; rows whose value is ``None`` or empty are left out."""
    rows = [(k, v) for k, v in pairs if v is not None and v != "" and v != ()]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in rows)
    return (
        f'{_STYLE}<table class="waiaas-t"><caption>{html.escape(caption)}</caption>'
        f"<tbody>{body}</tbody></table>"
    )


# --------------------------------------------------------------------------- optional extras


def require_pandas() -> Any:
    """Import pandas, or say which extra installs it."""
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ModuleNotFoundError(
            "to_dataframe() needs pandas: pip install 'waiaas[pandas]'", name="pandas"
        ) from exc
    return pandas


def require_pyplot() -> Any:
    """Import matplotlib.pyplot (non-interactive when no display), or say which extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ModuleNotFoundError(
            "plots need matplotlib: pip install 'waiaas[plot]'", name="matplotlib"
        ) from exc
    return plt


def frame(
    records: Sequence[Mapping[str, object]],
    columns: Sequence[str],
    *,
    times: Sequence[str] = (),
    exact: Sequence[str] = (),
) -> pd.DataFrame:
    """A DataFrame with ``columns``; ``times`` (Unix seconds) become UTC datetimes and
    ``exact`` columns stay Python objects (Decimal or str), never floats."""
    pd = require_pandas()
    data: dict[str, Any] = {}
    for col in columns:
        values = [r.get(col) for r in records]
        if col in times:
            data[col] = pd.to_datetime(
                pd.Series([v if v is not None else None for v in values], dtype="Int64"),
                unit="s",
                utc=True,
            )
        elif col in exact:
            data[col] = pd.Series(values, dtype=object)
        else:
            data[col] = pd.Series([plain(v) for v in values], dtype=object)
    df = pd.DataFrame(data, columns=list(columns))
    # Plain text columns get pandas' string dtype when every value is a string (or missing);
    # exact amount columns keep their Decimal / str objects.
    for col in columns:
        if col in times or col in exact:
            continue
        values = df[col].dropna()
        if len(values) and all(isinstance(v, str) for v in values):
            df[col] = df[col].astype("string")
    return df
