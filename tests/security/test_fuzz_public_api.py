"""Fuzzing every public Wallet method with hostile JSON-like values: the only exceptions
that may escape are WaiaasErrors, and the database passes ``PRAGMA integrity_check`` after
every example.

Fast by default; ``WAIAAS_FUZZ_EXAMPLES=2000 pytest tests/security/test_fuzz_public_api.py``
runs longer.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waiaas import Transfer, WaiaasError, Wallet
from waiaas.testing import TEST_PASSWORD, FrozenClock, fast_config, fund, local_chains

EXAMPLES = int(os.environ.get("WAIAAS_FUZZ_EXAMPLES", "60"))

# Methods whose purpose is to end or fork the wallet's life: exercised elsewhere.
# ``recover`` is the deprecated alias of ``release_kill_switch`` (fuzzed under that name): it
# warns by design, and warnings are errors here.
SKIP = {"open", "close", "start_background", "stop_background", "lock", "recover"}

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "💥" * 3,
    "A" * 300,
    "0" * 5000,
    "1" * 4400,
    "-1",
    "1.5",
    "1e18",
    "NaN",
    "../../etc/passwd",
    "'; DROP TABLE agents; --",
    "00000000-0000-0000-0000-000000000000",
    "solana",
    "evm",
    "localnet",
    "TRANSFER",
    "warning",
    "approve",
]
HOSTILE_INT = [0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, 2**256 - 1, 2**256, -(2**63)]


def json_like() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(HOSTILE_INT),
        st.sampled_from([4300, 4400]).map(lambda e: 10**e),  # beyond int->str limits
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(HOSTILE_TEXT),
        st.text(max_size=20),
        st.binary(max_size=8),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(
                st.one_of(st.text(max_size=8), st.sampled_from(HOSTILE_TEXT)), inner, max_size=3
            ),
        ),
        max_leaves=6,
    )


class _Env:
    wallet: Wallet
    valid: list[Any]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Env]:
    """One wallet with an agent, a session and a transaction, shared by the examples."""
    directory = tmp_path_factory.mktemp("fuzz")
    wallet = Wallet.open(
        directory / "wallet.db",
        password=TEST_PASSWORD,
        chains=local_chains(),
        config=fast_config(),
        clock=FrozenClock(),
    )
    agent = wallet.create_agent("fuzz", "solana")
    fund(wallet, agent.id, 10**10)
    issued = wallet.issue_session(agent.id)
    other = wallet.create_agent("other", "evm")
    from nacl.signing import SigningKey

    from waiaas.keystore.keys import b58encode

    to = b58encode(bytes(SigningKey.generate().verify_key))
    tx = wallet.send(issued.token, Transfer(to=to, amount=10**6))
    e = _Env()
    e.wallet = wallet
    e.valid = [
        agent.id,
        other.id,
        issued.token,
        issued.session_id,
        tx.id,
        agent.public_key,
        str(uuid.uuid4()),
        to,
        {"type": "TRANSFER", "to": to, "amount": 1000},
        {"type": "TRANSFER", "to": to, "amount": 1.5},
        {"type": "TRANSFER", "to": to, "amount": str(2**256)},
        {"max_amount": "1"},
        {"instant_max": "1"},
    ]
    try:
        yield e
    finally:
        wallet.close()


METHODS = sorted(
    name
    for name, member in inspect.getmembers(Wallet)
    if not name.startswith("_") and callable(member) and name not in SKIP
)


def _call(wallet: Wallet, name: str, data: st.DataObject, valid: list[Any]) -> None:
    method = getattr(wallet, name)
    value = st.one_of(json_like(), st.sampled_from(valid))
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in inspect.signature(method).parameters.values():
        optional = param.default is not inspect.Parameter.empty
        if optional and data.draw(st.booleans(), label=f"{param.name}: omit"):
            continue
        v = data.draw(value, label=param.name)
        if name == "backup" and isinstance(v, str | bytes) and os.path.isdir(v):
            v = "/nonexistent/for/sure"  # never write backups into real directories
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[param.name] = v
        else:
            args.append(v)
    with contextlib.suppress(WaiaasError):
        method(*args, **kwargs)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(data=st.data())
def test_hostile_input_raises_only_waiaas_errors(env: _Env, data: st.DataObject) -> None:
    """Any public method, any JSON-like arguments: a result or a WaiaasError; never a
    TypeError, OverflowError, UnicodeEncodeError, pydantic or SQLAlchemy error; and the
    file stays sound."""
    name = data.draw(st.sampled_from(METHODS), label="method")
    _call(env.wallet, name, data, env.valid)
    if env.wallet._keystore.locked:
        env.wallet.unlock(TEST_PASSWORD)
    assert env.wallet._db.integrity_check() == []


@settings(max_examples=max(10, EXAMPLES // 3), deadline=None, database=None)
@given(value=json_like())
def test_hostile_paths_to_open(tmp_path_factory: pytest.TempPathFactory, value: Any) -> None:
    """Wallet.open with a hostile path (inside a scratch directory when it is text):
    a WaiaasError or a wallet, nothing else."""
    base = tmp_path_factory.mktemp("open")
    path = f"{base}/{value}" if isinstance(value, str) else value
    try:
        wallet = Wallet.open(path, password=TEST_PASSWORD, config=fast_config())
    except WaiaasError:
        return
    wallet.close()


@pytest.mark.parametrize(
    "name",
    ["a\x00b.db", "x" * 300 + ".db", "\ud800.db", "fifo"],
)
def test_bad_paths_are_invalid_input(tmp_path: Path, name: str) -> None:
    """NUL, an overlong name, a lone surrogate, a FIFO: refused with a WaiaasError (the
    first three as InvalidInputError naming ``path``), without blocking."""
    from waiaas import DatabaseOpenError, InvalidInputError

    path = tmp_path / name
    if name == "fifo":
        os.mkfifo(path)
        with pytest.raises(DatabaseOpenError):
            Wallet.open(path, password=TEST_PASSWORD, config=fast_config())
        return
    with pytest.raises(InvalidInputError) as caught:
        Wallet.open(str(tmp_path) + "/" + name, password=TEST_PASSWORD, config=fast_config())
    assert caught.value.field == "path"
