"""The adapter capabilities the pipeline asks about (``plans.capable`` and its guards) are
decided once per adapter object, never per class, and forgotten with the object.

The attempts to get around it: an adapter without the capability, two objects of one class
that differ (one given a method of its own, as a protocol check allows), an object that
dies and a new one in its place, and an adapter that cannot be weakly referenced.
"""

from __future__ import annotations

import gc
from typing import Any

from waiaas.chains.base import SupportsNonces, SupportsPlans
from waiaas.pipeline import plans
from waiaas.types import Transfer


class _Planner:
    """Shows its plans (and has nonces)."""

    def plan_of(self, unsigned: Any) -> Any:
        raise AssertionError("not called")

    def plan_of_signed(self, signed: Any) -> Any:
        raise AssertionError("not called")

    def account_lookup(self) -> None:
        return None

    def pending_nonce(self, address: str) -> int:
        return 0


class _Plain:
    """Neither shows plans nor has nonces; building it would fail the test."""

    chain = "solana"

    def build(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an adapter without plans is not built at admission")


class _Slotted:
    """Cannot be weakly referenced."""

    __slots__ = ()

    def pending_nonce(self, address: str) -> int:
        return 0


def test_answers_are_those_of_isinstance() -> None:
    planner, plain = _Planner(), _Plain()
    assert plans.has_plans(planner) and plans.has_nonces(planner)
    assert not plans.has_plans(plain) and not plans.has_nonces(plain)
    assert not plans.has_fee_quote(planner) and not plans.has_simulation(plain)
    for _ in range(3):  # remembered answers stay the same
        assert plans.has_plans(planner) and not plans.has_plans(plain)
        assert plans.capable(planner, SupportsPlans) is isinstance(planner, SupportsPlans)


def test_an_adapter_without_plans_is_not_built() -> None:
    prepared = plans.prepare(_Plain(), Transfer(to="x" * 32, amount=1), "sender")  # type: ignore[arg-type]
    assert prepared.plan is None and prepared.digest is None and prepared.effects is None


def test_decided_per_object_not_per_class() -> None:
    """A protocol check looks at the object: one given the method is capable, its
    class-mates are not."""
    able, plain = _Plain(), _Plain()
    able.pending_nonce = lambda address: 0  # type: ignore[attr-defined]
    assert plans.has_nonces(able) and isinstance(able, SupportsNonces)
    assert not plans.has_nonces(plain) and not isinstance(plain, SupportsNonces)
    assert plans.has_nonces(able) and not plans.has_nonces(plain)


def test_forgotten_with_the_object() -> None:
    planner = _Planner()
    assert plans.has_plans(planner)
    key = id(planner)
    assert key in plans._capabilities
    del planner
    gc.collect()
    assert key not in plans._capabilities
    # objects made afterwards (whatever ids they get) are asked afresh
    for _ in range(50):
        plain = _Plain()
        assert not plans.has_plans(plain)
        del plain


def test_an_object_at_a_reused_id_is_asked_afresh() -> None:
    """Even with an entry left at the id (its object gone), the new object is asked."""
    plain = _Plain()
    planner = _Planner()
    assert plans.has_plans(planner)
    plans._capabilities[id(plain)] = plans._capabilities[id(planner)]  # a stale entry
    assert not plans.has_plans(plain)
    assert plans.has_plans(planner)


def test_not_weakly_referenceable_is_checked_every_time() -> None:
    slotted = _Slotted()
    assert plans.has_nonces(slotted) and not plans.has_plans(slotted)
    assert id(slotted) not in plans._capabilities
