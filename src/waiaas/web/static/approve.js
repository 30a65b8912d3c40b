// waiaas owner approval page: connect the owner's wallet, sign the approval message, post it.
// Served from the package itself (no third-party script); the page's CSP allows only this file.
(function () {
  "use strict";

  var root = document.getElementById("approval");
  var statusEl = document.getElementById("status");
  if (!root || !statusEl) {
    return;
  }
  var owner = root.getAttribute("data-owner") || "";
  var kind = root.getAttribute("data-kind") || "";
  var buttons = [document.getElementById("approve"), document.getElementById("reject")];

  function show(text, cls) {
    statusEl.textContent = text;
    statusEl.className = cls || "";
  }

  function setBusy(busy) {
    buttons.forEach(function (b) {
      if (b) {
        b.disabled = busy;
      }
    });
  }

  function hex(bytes) {
    var out = "0x";
    for (var i = 0; i < bytes.length; i++) {
      out += (bytes[i] & 0xff).toString(16).padStart(2, "0");
    }
    return out;
  }

  function utf8(text) {
    return new TextEncoder().encode(text);
  }

  function readable(err) {
    if (!err) {
      return "Something went wrong.";
    }
    if (err.code === 4001) {
      return "You declined the request in your wallet; nothing was signed.";
    }
    return String(err.message || err);
  }

  // ---------------------------------------------------------------- EVM (EIP-1193)

  async function signEvm(message) {
    var eth = window.ethereum;
    if (!eth || typeof eth.request !== "function") {
      throw new Error(
        "No Ethereum wallet found in this browser. Install MetaMask (or another wallet " +
          "that injects window.ethereum) and reload this page."
      );
    }
    var accounts = (await eth.request({ method: "eth_requestAccounts" })) || [];
    var account = null;
    for (var i = 0; i < accounts.length; i++) {
      if (String(accounts[i]).toLowerCase() === owner.toLowerCase()) {
        account = accounts[i];
      }
    }
    if (!account) {
      throw new Error(
        "The connected account " + (accounts[0] || "(none)") + " is not the owner " + owner +
          ". Switch your wallet to the owner account and try again."
      );
    }
    // EIP-191 personal_sign: the message as 0x-hex of its UTF-8 bytes, then the account.
    return await eth.request({ method: "personal_sign", params: [hex(utf8(message)), account] });
  }

  // ---------------------------------------------------------------- Solana

  var standardWallets = [];
  var standardApi = {
    register: function () {
      for (var i = 0; i < arguments.length; i++) {
        standardWallets.push(arguments[i]);
      }
      return function () {};
    },
  };
  // Wallet Standard discovery: wallets that load later register through this event;
  // wallets already loaded answer the app-ready event.
  window.addEventListener("wallet-standard:register-wallet", function (event) {
    try {
      event.detail(standardApi);
    } catch (e) {
      /* a broken wallet must not break the page */
    }
  });
  try {
    window.dispatchEvent(new CustomEvent("wallet-standard:app-ready", { detail: standardApi }));
  } catch (e) {
    /* ignore */
  }

  function base58(key) {
    if (!key) {
      return "";
    }
    if (typeof key === "string") {
      return key;
    }
    if (typeof key.toBase58 === "function") {
      return key.toBase58();
    }
    return String(key);
  }

  async function signSolanaStandard(wallet, bytes) {
    var connected = await wallet.features["standard:connect"].connect();
    var accounts = (connected && connected.accounts) || wallet.accounts || [];
    var account = null;
    for (var i = 0; i < accounts.length; i++) {
      if (accounts[i].address === owner) {
        account = accounts[i];
      }
    }
    if (!account) {
      throw new Error(
        "The connected account " + ((accounts[0] && accounts[0].address) || "(none)") +
          " is not the owner " + owner + ". Switch your wallet to the owner account and try again."
      );
    }
    var outputs = await wallet.features["solana:signMessage"].signMessage({
      account: account,
      message: bytes,
    });
    return hex(outputs[0].signature);
  }

  async function signSolana(message) {
    var bytes = utf8(message);
    for (var i = 0; i < standardWallets.length; i++) {
      var w = standardWallets[i];
      if (w && w.features && w.features["solana:signMessage"] && w.features["standard:connect"]) {
        return await signSolanaStandard(w, bytes);
      }
    }
    var provider = (window.phantom && window.phantom.solana) || window.solana;
    if (!provider || typeof provider.signMessage !== "function") {
      throw new Error(
        "No Solana wallet found in this browser. Install Phantom (or another Solana wallet) " +
          "and reload this page."
      );
    }
    var connected = await provider.connect();
    var address = base58((connected && connected.publicKey) || provider.publicKey);
    if (address !== owner) {
      throw new Error(
        "The connected account " + (address || "(none)") + " is not the owner " + owner +
          ". Switch your wallet to the owner account and try again."
      );
    }
    var signed = await provider.signMessage(bytes, "utf8");
    return hex((signed && signed.signature) || signed);
  }

  // ---------------------------------------------------------------- decide

  async function decide(action) {
    setBusy(true);
    show("Waiting for your wallet to sign…", "pending");
    try {
      var message = document.getElementById("msg-" + action).textContent;
      var signature = kind === "evm" ? await signEvm(message) : await signSolana(message);
      show("Checking the signature…", "pending");
      var response = await fetch(window.location.pathname, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ action: action, signature: signature }),
        credentials: "same-origin",
        cache: "no-store",
      });
      var data = {};
      try {
        data = await response.json();
      } catch (e) {
        data = { error: "The server answered " + response.status + "." };
      }
      if (!response.ok) {
        throw new Error(data.error || "The server answered " + response.status + ".");
      }
      show(data.message, "ok");
      buttons.forEach(function (b) {
        if (b) {
          b.hidden = true;
        }
      });
    } catch (err) {
      show(readable(err), "error");
      setBusy(false);
    }
  }

  buttons.forEach(function (b) {
    if (b) {
      b.addEventListener("click", function () {
        decide(b.id);
      });
    }
  });
})();
