"""The owner's approval page: an ASGI app a host mounts, or ``waiaas serve-approvals`` serves.

For one pending APPROVAL transaction the page shows every effect in human units (full
addresses), the network fee, the tier, the agent, why the owner must approve and the expiry;
the owner connects their wallet (an injected EIP-1193 provider such as MetaMask for EVM
owners, Phantom or any Wallet Standard wallet for Solana owners), signs the approval message
in the browser, and the page posts the signature, which the server checks through the same
code as :meth:`waiaas.Wallet.approve`. Approve and Reject both.

Example::

    import uvicorn
    from waiaas import Wallet, WalletConfig
    from waiaas.web import approvals_app

    config = WalletConfig(approvals_url="https://wallet.example.com/approvals")
    wallet = Wallet.open("agents.db", chains=chains, config=config, background=True)
    uvicorn.run(approvals_app(wallet), host="127.0.0.1", port=8000)

Needs the ``web`` extra (``pip install waiaas[web]``) for :func:`approvals_app`; the link and
display helpers (:mod:`waiaas.web.links`, :mod:`waiaas.web.display`) need nothing extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from waiaas.web.display import (
    EffectRow,
    NetworkFee,
    TxDisplay,
    describe_fee,
    describe_transaction,
)

if TYPE_CHECKING:
    from waiaas.wallet import Wallet

__all__ = [
    "EffectRow",
    "NetworkFee",
    "TxDisplay",
    "approvals_app",
    "describe_fee",
    "describe_transaction",
]


def approvals_app(wallet: Wallet, *, debug: bool = False) -> Any:
    """The approval page as a Starlette (ASGI) application serving ``wallet``.

    Mount it where ``WalletConfig.approvals_url`` points (links are
    ``<approvals_url>/<tx id>/<token>``; the app serves ``/<tx id>/<token>`` relative to its
    mount point, and its own script and style under ``/static/``). Every response carries a
    strict Content-Security-Policy (``script-src 'self'``, no inline script, no third-party
    origin), ``no-store`` caching and ``Referrer-Policy: no-referrer`` (the link is a
    capability and must not leak through the ``Referer`` header).

    Args:
        wallet: an open :class:`~waiaas.Wallet` (unlocked: links are checked with a secret
            from its keystore). Run its background work (``background=True``) so approved
            transactions that were not confirmed inline are finished.
        debug: Starlette debug mode (tracebacks in responses); never in production.

    Raises:
        InvalidInputError: ``wallet`` is not a Wallet.
        ImportError: the ``web`` extra (starlette) is not installed.

    Example::

        app = approvals_app(wallet)          # then: uvicorn.run(app, port=8000)
    """
    from waiaas.web._app import build_app

    return build_app(wallet, debug=debug)
