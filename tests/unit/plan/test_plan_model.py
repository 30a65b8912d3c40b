"""The plan model: strict construction, lossless JSON, canonical bytes and a stable digest."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from plan_helpers import EVM_BOB, EVM_SENDER, EVM_TOKEN, PAYER, evm_plan, plans

from waiaas.errors import InvalidInputError, WaiaasError
from waiaas.plan import (
    EvmPlan,
    Plan,
    SolanaAccountMeta,
    SolanaInstruction,
    SolanaPlan,
    canonical_bytes,
    plan_digest,
    plan_from_json,
    plan_to_json,
)

TRANSFER_DATA = bytes.fromhex("a9059cbb" + "00" * 12 + "b0" * 20 + "00" * 31 + "2a")


def _solana() -> SolanaPlan:
    return SolanaPlan(
        network="localnet",
        fee_payer=str(PAYER),
        instructions=(
            SolanaInstruction(
                "11111111111111111111111111111111",
                (
                    SolanaAccountMeta(str(PAYER), True, True),
                    SolanaAccountMeta("2UvS6JYwuVVaeZ5pvYZqo3dE8xcTcusCu7sGdz4xHpeE", False, True),
                ),
                bytes.fromhex("020000000500000000000000"),
            ),
        ),
    )


@settings(max_examples=300, deadline=None)
@given(plans)
def test_json_round_trip_is_byte_exact(plan: Plan) -> None:
    """Any plan (random bytes, non-UTF-8, hex-looking ASCII) survives JSON text unchanged."""
    data = plan_to_json(plan)
    text = json.dumps(data)
    back = plan_from_json(json.loads(text))
    assert back == plan
    assert plan_to_json(back) == data
    assert canonical_bytes(back) == canonical_bytes(plan)
    if isinstance(plan, EvmPlan):
        assert isinstance(back, EvmPlan) and back.data == plan.data
    else:
        assert isinstance(back, SolanaPlan)
        assert [ix.data for ix in back.instructions] == [ix.data for ix in plan.instructions]


def test_hex_looking_ascii_data_is_kept_as_those_ascii_bytes() -> None:
    """Calldata that is the ASCII text of hex is stored as those ASCII bytes, never re-parsed."""
    ascii_hex = TRANSFER_DATA.hex().encode("ascii")
    plan = evm_plan(ascii_hex)
    stored = plan_to_json(plan)
    assert stored["data"] == "0x" + ascii_hex.hex()
    assert plan_from_json(stored).data == ascii_hex != TRANSFER_DATA


def test_digest_is_stable_and_pinned() -> None:
    """The digest of a fixed plan never changes (a change would void stored approvals)."""
    plan = evm_plan(TRANSFER_DATA)
    assert canonical_bytes(plan) == (
        b'{"chain":"evm","chain_id":"1","data":"0x'
        + TRANSFER_DATA.hex().encode()
        + b'","network":"mainnet","sender":"'
        + EVM_SENDER.encode()
        + b'","to":"'
        + EVM_TOKEN.encode()
        + b'","v":1,"value":"0"}'
    )
    assert plan_digest(plan) == plan_digest(evm_plan(TRANSFER_DATA))
    assert plan_digest(_solana()) == plan_digest(plan_from_json(plan_to_json(_solana())))
    pinned = "0x" + __import__("hashlib").sha256(canonical_bytes(plan)).hexdigest()
    assert plan_digest(plan) == pinned


@pytest.mark.parametrize(
    "change",
    [
        lambda p: EvmPlan(p.network, p.chain_id, p.sender, EVM_BOB, p.value, p.data),
        lambda p: EvmPlan(p.network, p.chain_id, p.sender, p.to, 1, p.data),
        lambda p: EvmPlan(p.network, 5, p.sender, p.to, p.value, p.data),
        lambda p: EvmPlan("sepolia", p.chain_id, p.sender, p.to, p.value, p.data),
        lambda p: EvmPlan(p.network, p.chain_id, p.sender, p.to, p.value, p.data + b"\0"),
        lambda p: EvmPlan(p.network, p.chain_id, EVM_BOB, p.to, p.value, p.data),
    ],
)
def test_every_field_changes_the_digest(change: Any) -> None:
    """Changing what is called, with what, by whom, where, changes the digest."""
    plan = evm_plan(TRANSFER_DATA)
    assert plan_digest(change(plan)) != plan_digest(plan)


def test_solana_account_flags_change_the_digest() -> None:
    """A signer or writable flag is part of what is signed, hence of the digest."""
    plan = _solana()
    ix = plan.instructions[0]
    flipped = SolanaInstruction(
        ix.program_id,
        (ix.accounts[0], SolanaAccountMeta(ix.accounts[1].pubkey, False, False)),
        ix.data,
    )
    other = SolanaPlan(plan.network, plan.fee_payer, (flipped,))
    assert plan_digest(other) != plan_digest(plan)


def _bad_variants() -> list[tuple[str, dict[str, Any]]]:
    evm = plan_to_json(evm_plan(TRANSFER_DATA))
    sol = plan_to_json(_solana())
    out: list[tuple[str, dict[str, Any]]] = []

    def variant(name: str, base: dict[str, Any], edit: Any) -> None:
        data = copy.deepcopy(base)
        edit(data)
        out.append((name, data))

    variant("version 2", evm, lambda d: d.update(v=2))
    variant("version as string", evm, lambda d: d.update(v="1"))
    variant("version true", evm, lambda d: d.update(v=True))
    variant("version float", evm, lambda d: d.update(v=1.0))
    variant("unknown chain", evm, lambda d: d.update(chain="btc"))
    variant("extra key", evm, lambda d: d.update(gas="21000"))
    variant("missing key", evm, lambda d: d.pop("value"))
    variant("uppercase hex", evm, lambda d: d.update(data=d["data"].upper().replace("0X", "0x")))
    variant("no 0x", evm, lambda d: d.update(data=d["data"][2:]))
    variant("odd hex", evm, lambda d: d.update(data=d["data"] + "0"))
    variant("data as text", evm, lambda d: d.update(data="transfer"))
    variant("data as list", evm, lambda d: d.update(data=[1, 2]))
    variant("value as int", evm, lambda d: d.update(value=0))
    variant("value leading zero", evm, lambda d: d.update(value="01"))
    variant("value negative", evm, lambda d: d.update(value="-1"))
    variant("value too big", evm, lambda d: d.update(value=str(2**256)))
    variant("value float text", evm, lambda d: d.update(value="1.0"))
    variant("chain id zero", evm, lambda d: d.update(chain_id="0"))
    variant("lowercase address", evm, lambda d: d.update(sender=d["sender"].lower()))
    variant("bad checksum", evm, lambda d: d.update(sender=d["sender"][:-1] + "a"))
    variant("solana address on evm", evm, lambda d: d.update(to=str(PAYER)))
    variant("blank network", evm, lambda d: d.update(network=" "))
    variant("network with newline", evm, lambda d: d.update(network="main\nnet"))
    variant("sol bad pubkey", sol, lambda d: d.update(fee_payer="1" * 44))
    variant("sol evm address", sol, lambda d: d.update(fee_payer=EVM_SENDER))
    variant(
        "sol signer as int", sol, lambda d: d["instructions"][0]["accounts"][0].update(is_signer=1)
    )
    variant("sol extra meta key", sol, lambda d: d["instructions"][0]["accounts"][0].update(x=1))
    variant("sol instructions dict", sol, lambda d: d.update(instructions={}))
    variant("sol accounts dict", sol, lambda d: d["instructions"][0].update(accounts={}))
    variant(
        "sol data too long", sol, lambda d: d["instructions"][0].update(data="0x" + "00" * 1233)
    )
    variant("sol evm keys", sol, lambda d: d.update(chain="evm"))
    return out


@pytest.mark.parametrize(("name", "data"), _bad_variants(), ids=[n for n, _ in _bad_variants()])
def test_malformed_json_is_refused(name: str, data: dict[str, Any]) -> None:
    """Every malformed or non-canonical field is an InvalidInputError naming the field."""
    with pytest.raises(InvalidInputError) as info:
        plan_from_json(data)
    assert info.value.field


@pytest.mark.parametrize("data", [None, [], "plan", 1, {"v": 1}])
def test_not_an_object_is_refused(data: Any) -> None:
    """Anything but a plan object is refused."""
    with pytest.raises(InvalidInputError):
        plan_from_json(data)


@pytest.mark.parametrize(
    "build",
    [
        lambda: EvmPlan("x", 1, EVM_SENDER, None, 0, bytearray(b"1")),  # type: ignore[arg-type]
        lambda: EvmPlan("x", 1, EVM_SENDER, None, 0, "0x12"),  # type: ignore[arg-type]
        lambda: EvmPlan("x", True, EVM_SENDER, None, 0, b""),
        lambda: EvmPlan("x", 1, EVM_SENDER, None, -1, b""),
        lambda: EvmPlan("x", 1, EVM_SENDER, None, 1.0, b""),  # type: ignore[arg-type]
        lambda: EvmPlan("x", 1, EVM_SENDER.lower(), None, 0, b""),
        lambda: EvmPlan("x", 1, EVM_SENDER, None, 0, b"\0" * (128 * 1024 + 1)),
        lambda: SolanaPlan("x", str(PAYER), [SolanaInstruction(str(PAYER), (), b"")]),  # type: ignore[arg-type]
        lambda: SolanaInstruction(str(PAYER), [], b""),  # type: ignore[arg-type]
        lambda: SolanaAccountMeta(str(PAYER), 1, True),  # type: ignore[arg-type]
        lambda: SolanaAccountMeta(" " + str(PAYER), True, True),
    ],
)
def test_constructors_validate(build: Any) -> None:
    """A plan cannot even be built from loose values: every field is checked."""
    with pytest.raises(InvalidInputError):
        build()


def test_plan_to_json_refuses_other_objects() -> None:
    """Only plans serialise."""
    with pytest.raises(WaiaasError):
        plan_to_json({"chain": "evm"})  # type: ignore[arg-type]


def test_canonical_bytes_are_ascii_json_with_sorted_keys() -> None:
    """The canonical encoding is compact, sorted, ASCII JSON of the versioned form."""
    raw = canonical_bytes(_solana())
    assert raw.decode("ascii")
    assert json.loads(raw) == plan_to_json(_solana())
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()


def test_importing_and_using_plan_loads_no_chain_library() -> None:
    """``waiaas.plan`` stays light: decoding an EVM and a Solana plan imports no web3/solders."""
    import subprocess
    import sys

    code = (
        "import sys; from waiaas.plan import EvmPlan, SolanaPlan, decode_plan; "
        f"decode_plan(EvmPlan('m', 1, {EVM_SENDER!r}, {EVM_TOKEN!r}, 1, b'\\xa9\\x05\\x9c\\xbb')); "
        f"decode_plan(SolanaPlan('m', {str(PAYER)!r}, ())); "
        "print([m for m in sys.modules if m.split('.')[0] in ('web3', 'solders', 'eth_tester')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
