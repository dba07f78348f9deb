"""The market simulator: a synthetic shop whose every latent trait is known.

``Market(...).simulate()`` returns a :class:`Shop` (the seven canonical tables) with its
:class:`Truth`; :func:`write_export` writes what a shop would export, optionally dirty;
:class:`MarketEnv` runs online experiments against the true response model. The package
imports nothing else from marketloop.
"""

from __future__ import annotations

from marketloop.simulate._campaign import Campaign, historical_campaign, random_campaign
from marketloop.simulate._env import MarketEnv
from marketloop.simulate._export import Export, write_export
from marketloop.simulate._market import SCENARIOS, TABLES, Market, Shop, Truth
from marketloop.simulate._response import action_catalogue, true_response
from marketloop.simulate._truth import true_affinity, write_truth

__all__ = [
    "SCENARIOS",
    "TABLES",
    "Campaign",
    "Export",
    "Market",
    "MarketEnv",
    "Shop",
    "Truth",
    "action_catalogue",
    "historical_campaign",
    "random_campaign",
    "true_affinity",
    "true_response",
    "write_export",
    "write_truth",
]
