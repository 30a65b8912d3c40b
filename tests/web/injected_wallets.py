"""Wallets injected into the page for the browser tests, and the local signer behind them.

The injected objects look like MetaMask (an EIP-1193 ``window.ethereum``), Phantom
(``window.phantom.solana`` with ``connect`` / ``signMessage``) and a Wallet Standard wallet
(registered through the ``wallet-standard:register-wallet`` event). None of them holds a key:
every signing call is queued in the page, and :func:`serve_one_signature` (the test signer,
holding the owner's key in the test process) takes it, signs it, and answers it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

_QUEUE = """
window.__waiaasSignQueue = [];
window.__waiaasAsk = function (kind, payload) {
  return new Promise(function (resolve, reject) {
    window.__waiaasSignQueue.push({kind: kind, payload: payload, resolve: resolve, reject: reject});
  });
};
function __waiaasBytes(hex) {
  var out = new Uint8Array((hex.length - 2) / 2);
  for (var i = 0; i < out.length; i++) { out[i] = parseInt(hex.substr(2 + 2 * i, 2), 16); }
  return out;
}
"""


def evm_provider(accounts: list[str]) -> str:
    """An EIP-1193 provider reporting ``accounts`` whose ``personal_sign`` is queued."""
    return (
        _QUEUE
        + f"""
window.ethereum = {{
  isMetaMask: true,
  request: function (args) {{
    var accounts = {json.dumps(accounts)};
    if (args.method === "eth_requestAccounts" || args.method === "eth_accounts") {{
      return Promise.resolve(accounts);
    }}
    if (args.method === "personal_sign") {{
      return window.__waiaasAsk("evm", {{data: args.params[0], account: args.params[1]}});
    }}
    return Promise.reject({{code: 4200, message: "unsupported method " + args.method}});
  }}
}};
"""
    )


def phantom_provider(public_key: str) -> str:
    """A Phantom-style ``window.phantom.solana`` whose ``signMessage`` is queued."""
    return (
        _QUEUE
        + f"""
(function () {{
  var key = {{ toBase58: function () {{ return {json.dumps(public_key)}; }} }};
  var provider = {{
    isPhantom: true,
    publicKey: null,
    connect: function () {{
      provider.publicKey = key;
      return Promise.resolve({{publicKey: key}});
    }},
    signMessage: function (bytes, display) {{
      return window.__waiaasAsk("solana", {{data: Array.from(bytes), display: display}})
        .then(function (hex) {{ return {{signature: __waiaasBytes(hex), publicKey: key}}; }});
    }}
  }};
  window.phantom = {{ solana: provider }};
}})();
"""
    )


def standard_wallet(address: str) -> str:
    """A Wallet Standard wallet (``standard:connect`` + ``solana:signMessage``) that
    registers itself the way real ones do, both before and after the app is ready."""
    return (
        _QUEUE
        + f"""
(function () {{
  var account = {{ address: {json.dumps(address)}, publicKey: new Uint8Array(32),
                  chains: ["solana:localnet"], features: ["solana:signMessage"] }};
  var wallet = {{
    version: "1.0.0", name: "Test Standard Wallet", icon: "data:image/svg+xml;base64,",
    chains: ["solana:localnet"], accounts: [account],
    features: {{
      "standard:connect": {{ version: "1.0.0",
        connect: function () {{ return Promise.resolve({{accounts: [account]}}); }} }},
      "solana:signMessage": {{ version: "1.0.0",
        signMessage: function (input) {{
          return window.__waiaasAsk("solana", {{data: Array.from(input.message)}})
            .then(function (hex) {{
              return [{{signedMessage: input.message, signature: __waiaasBytes(hex)}}];
            }});
        }} }}
    }}
  }};
  function register(api) {{ api.register(wallet); }}
  window.addEventListener("wallet-standard:app-ready", function (e) {{ register(e.detail); }});
  window.dispatchEvent(new CustomEvent("wallet-standard:register-wallet", {{detail: register}}));
}})();
"""
    )


def inject(driver: Any, script: str) -> None:
    """Run ``script`` in every page before the page's own scripts (like an extension)."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})


def serve_one_signature(
    driver: Any, sign: Callable[[str, bytes], str], *, timeout: float = 30.0
) -> bytes:
    """Wait for the page's next signing request, sign it with ``sign(kind, message)`` and
    answer it; returns the message bytes the wallet was asked to sign."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = driver.execute_script(
            "var q = window.__waiaasSignQueue;"
            "return q && q.length ? {kind: q[0].kind, payload: q[0].payload} : null;"
        )
        if request:
            payload = request["payload"]
            if request["kind"] == "evm":
                message = bytes.fromhex(payload["data"][2:])
            else:
                message = bytes(payload["data"])
            signature = sign(request["kind"], message)
            driver.execute_script(
                "window.__waiaasSignQueue.shift().resolve(arguments[0]);", signature
            )
            return message
        time.sleep(0.05)
    raise AssertionError("the page never asked the wallet to sign")
