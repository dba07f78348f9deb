"""Seeded shops shared by the simulator tests (built once per session)."""

from __future__ import annotations

import pytest

from marketloop.simulate import Market, Shop


@pytest.fixture(scope="session")
def shop() -> Shop:
    """A full shop: 4,000 customers over a year."""
    return Market(n_customers=4_000, n_days=365, random_state=11).simulate()


@pytest.fixture(scope="session")
def big() -> Shop:
    """50,000 customers, customers and orders only, for the statistical checks."""
    return Market(n_customers=50_000, n_days=365, random_state=5).simulate(
        ("customers", "orders"), full_truth=False)
