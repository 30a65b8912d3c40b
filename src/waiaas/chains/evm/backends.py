"""Transports behind :class:`~waiaas.chains.evm.adapter.EvmAdapter` (internal).

* :class:`TesterBackend`: an in-process chain (eth-tester + py-evm, coincurve for speed).
  It is not thread-safe, so every call runs under one re-entrant lock. It mines each
  transaction at once and has no mempool, so a transaction whose nonce is ahead of the
  sender's (because a sibling thread submits a lower nonce a moment later) is *parked*
  here and sent as soon as the gap closes, the way a node's queued pool behaves.
* :class:`HttpBackend`: a JSON-RPC node over HTTP (anvil, geth, a provider), with a
  timeout on every request and one ``requests.Session`` closed by :meth:`close`.

Both expose a middleware-free ``web3.Web3`` as ``w3``; errors are mapped by the adapter.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

__all__ = ["Backend", "HttpBackend", "TesterBackend"]

_NONCE_GAP_RE = re.compile(r"Invalid transaction nonce: Expected (\d+), but got (\d+)")


class Backend:
    """Common surface of the transports."""

    name: str = "backend"
    w3: Any
    #: strings removed from error details (the RPC URL may embed an API key)
    redact: tuple[str, ...] = ()

    def guard(self) -> AbstractContextManager[Any]:
        """A context manager held around every call into the chain."""
        return nullcontext()

    def send_raw(self, raw: bytes, tx_hash: str, sender_of: Callable[[], str]) -> None:
        """Hand signed bytes to the chain (raises the upstream exception on refusal)."""
        self.w3.eth.send_raw_transaction(raw)

    def is_queued(self, tx_hash: str) -> bool:
        """True when the transaction waits in this backend's own queue."""
        return False

    def close(self) -> None:
        """Release the transport's resources."""


class TesterBackend(Backend):
    """The in-process eth-tester chain (a fresh chain per instance)."""

    name = "eth-tester"

    def __init__(self) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider, Web3

        self.tester = EthereumTester(PyEVMBackend())
        self.w3 = Web3(EthereumTesterProvider(self.tester), middleware=[])
        self._lock = threading.RLock()
        # sender -> nonce -> (tx_hash, raw): transactions waiting for a lower nonce
        self._queued: dict[str, dict[int, tuple[str, bytes]]] = {}
        self._queued_hashes: set[str] = set()

    def guard(self) -> AbstractContextManager[Any]:
        return self._lock

    def send_raw(self, raw: bytes, tx_hash: str, sender_of: Callable[[], str]) -> None:
        with self._lock:
            if tx_hash in self._queued_hashes:
                return
            try:
                self.w3.eth.send_raw_transaction(raw)
            except Exception as exc:
                match = _NONCE_GAP_RE.search(str(exc))
                if match is None or int(match.group(2)) <= int(match.group(1)):
                    raise
                self._enqueue(sender_of(), int(match.group(2)), tx_hash, raw)
                return
            self.flush()

    def _enqueue(self, sender: str, nonce: int, tx_hash: str, raw: bytes) -> None:
        book = self._queued.setdefault(sender, {})
        previous = book.get(nonce)
        if previous is not None:
            self._queued_hashes.discard(previous[0])
        book[nonce] = (tx_hash, raw)
        self._queued_hashes.add(tx_hash)

    def flush(self) -> None:
        """Send every queued transaction whose nonce is now next; drop the stale ones."""
        with self._lock:
            progress = True
            while progress and self._queued:
                progress = False
                for sender in list(self._queued):
                    book = self._queued[sender]
                    expected = self.w3.eth.get_transaction_count(sender)
                    for nonce in [n for n in book if n < expected]:
                        self._queued_hashes.discard(book.pop(nonce)[0])
                    entry = book.pop(expected, None)
                    if entry is not None:
                        self._queued_hashes.discard(entry[0])
                        try:
                            self.w3.eth.send_raw_transaction(entry[1])
                        except Exception:  # noqa: S110  (a node drops such a tx silently too)
                            pass
                        else:
                            progress = True
                    if not book:
                        del self._queued[sender]

    def is_queued(self, tx_hash: str) -> bool:
        with self._lock:
            if tx_hash in self._queued_hashes:
                self.flush()
            return tx_hash in self._queued_hashes


class HttpBackend(Backend):
    """A JSON-RPC node over HTTP(S), every request bounded by ``timeout`` seconds."""

    name = "rpc"

    def __init__(self, url: str, timeout: float) -> None:
        from web3 import HTTPProvider, Web3

        requests = importlib.import_module("requests")
        self._session = requests.Session()
        provider = HTTPProvider(
            url,
            request_kwargs={"timeout": timeout},
            session=self._session,
            exception_retry_configuration=None,
        )
        self.w3 = Web3(provider, middleware=[])
        self.redact = _url_secrets(url)

    def close(self) -> None:
        self._session.close()


def _url_secrets(url: str) -> tuple[str, ...]:
    """The parts of ``url`` that must never appear in an error: all but scheme and host."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    secrets = [url]
    if parts.path not in ("", "/"):
        secrets.append(parts.path)
    if parts.query:
        secrets.append(parts.query)
    if parts.username or parts.password:
        secrets.append(parts.netloc)
    return tuple(sorted(secrets, key=len, reverse=True))
