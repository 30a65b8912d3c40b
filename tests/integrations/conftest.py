"""The framework tests use the end-to-end fixtures: a wallet on LiteSVM and eth-tester."""

from tests.e2e.conftest import _warm_chain_imports, chain, clock, notifier, wallet

__all__ = ["_warm_chain_imports", "chain", "clock", "notifier", "wallet"]
