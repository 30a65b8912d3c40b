"""Keystore benchmark: unlock cost, and signing through the keystore vs. an in-memory key.

Run ``python benchmarks/bench_keystore.py``. Prints one JSON object per line:

* ``unlock``: open + unlock (one Argon2id run) at the MINIMUM, INTERACTIVE and MODERATE
  limits; median and spread of a few runs.
* ``sign``: operations per second (median of several batches) for ed25519 (pynacl) and
  secp256k1 (coincurve, a 32-byte hash):
    - ``baseline``: a key object already in memory, signing only;
    - ``keystore``: ``with ks.use_key(...)`` (read the sealed file, one AEAD decryption)
      then build the key object and sign; ``ratio`` = baseline / keystore;
    - ``rederive``: the reference engine's style, Argon2id at INTERACTIVE for every
      signature, then decrypt and sign; ``ratio`` = keystore / rederive.

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import nacl.pwhash.argon2id as argon2id
from coincurve import PrivateKey
from nacl.signing import SigningKey

from waiaas.config import KdfLimits
from waiaas.keystore import Keystore, generate_keypair
from waiaas.keystore import _crypto as crypto

PASSWORD = "benchmark master password"
MESSAGE = b"\x01" * 200  # about the size of a Solana transfer message
DIGEST = hashlib.sha256(b"an EVM transaction").digest()


def emit(**fields: object) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


def ops_per_second(op: Callable[[], object], count: int, batches: int = 5) -> list[float]:
    """Rates of ``batches`` batches of ``count`` calls (after one warm-up batch)."""
    for _ in range(min(count, 50)):
        op()
    rates: list[float] = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(count):
            op()
        rates.append(count / (time.perf_counter() - start))
    return rates


def bench_unlock(root: Path) -> None:
    for name, limits, runs in (
        ("MINIMUM", KdfLimits.minimum(), 15),
        ("INTERACTIVE", KdfLimits.interactive(), 5),
        ("MODERATE", KdfLimits.moderate(), 3),
    ):
        path = root / f"unlock-{name.lower()}"
        Keystore.create(path, PASSWORD, kdf=limits).lock()
        times: list[float] = []
        for _ in range(runs):
            start = time.perf_counter()
            store = Keystore.open(path)
            store.unlock(PASSWORD)
            times.append(time.perf_counter() - start)
            store.lock()
        emit(
            bench="unlock",
            kdf=name,
            opslimit=limits.opslimit,
            memlimit=limits.memlimit,
            runs=runs,
            median_ms=round(statistics.median(times) * 1000, 2),
            min_ms=round(min(times) * 1000, 2),
            max_ms=round(max(times) * 1000, 2),
        )


def bench_sign(root: Path) -> None:
    store = Keystore.create(root / "sign", PASSWORD, kdf=KdfLimits.minimum())
    sol_secret, sol_public = generate_keypair("solana")
    evm_secret, evm_public = generate_keypair("evm")
    store.add_key("agent-sol", "solana", sol_secret, sol_public)
    store.add_key("agent-evm", "evm", evm_secret, evm_public)

    # The reference engine's way: the sealed key and the salt at rest, Argon2id per signature.
    interactive = KdfLimits.interactive()
    salt = os.urandom(crypto.SALT_BYTES)
    slow_key = crypto.derive_key(
        PASSWORD.encode(), salt, interactive.opslimit, interactive.memlimit
    )
    associated = b"agent"
    sealed = {
        "ed25519": crypto.seal(slow_key, sol_secret, associated),
        "secp256k1": crypto.seal(slow_key, evm_secret, associated),
    }

    in_memory_ed = SigningKey(sol_secret)
    in_memory_k1 = PrivateKey(evm_secret)

    def ed_baseline() -> object:
        return in_memory_ed.sign(MESSAGE)

    def ed_keystore() -> object:
        with store.use_key("agent-sol") as secret:
            return SigningKey(secret).sign(MESSAGE)

    def ed_unseal_only() -> object:
        with store.use_key("agent-sol") as secret:
            return secret

    def k1_baseline() -> object:
        return in_memory_k1.sign_recoverable(DIGEST, hasher=None)

    def k1_keystore() -> object:
        with store.use_key("agent-evm") as secret:
            return PrivateKey(secret).sign_recoverable(DIGEST, hasher=None)

    def rederive(curve: str) -> Callable[[], object]:
        def op() -> object:
            key = argon2id.kdf(
                crypto.KEY_BYTES,
                PASSWORD.encode(),
                salt,
                opslimit=interactive.opslimit,
                memlimit=interactive.memlimit,
            )
            secret = crypto.unseal(key, sealed[curve], associated)
            if curve == "ed25519":
                return SigningKey(secret).sign(MESSAGE)
            return PrivateKey(secret).sign_recoverable(DIGEST, hasher=None)

        return op

    emit(
        bench="unseal",
        what="use_key only (read sealed file + AEAD decrypt), no signing",
        ops_per_s=round(statistics.median(ops_per_second(ed_unseal_only, 3000))),
    )
    for curve, baseline, through_keystore in (
        ("ed25519", ed_baseline, ed_keystore),
        ("secp256k1", k1_baseline, k1_keystore),
    ):
        base = statistics.median(ops_per_second(baseline, 3000))
        ours = statistics.median(ops_per_second(through_keystore, 3000))
        slow = statistics.median(ops_per_second(rederive(curve), 3, batches=3))
        emit(
            bench="sign",
            curve=curve,
            baseline_ops_per_s=round(base),
            keystore_ops_per_s=round(ours),
            baseline_over_keystore=round(base / ours, 2),
            rederive_interactive_ops_per_s=round(slow, 2),
            keystore_over_rederive=round(ours / slow),
        )
    store.lock()


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="waiaas-bench-") as tmp:
        root = Path(tmp)
        bench_unlock(root)
        bench_sign(root)
    emit(bench="total", seconds=round(time.perf_counter() - started, 1))


if __name__ == "__main__":
    main()
