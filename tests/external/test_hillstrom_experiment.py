"""The Hillstrom e-mail test through ``marketloop experiment analyse``, against pandas.

The per-arm rates and the average treatment effects are computed here from the raw file with
plain pandas, and stated literally (the published figures of the challenge: visit rates
18.28 % / 15.14 % / 10.62 %, conversion 1.25 % / 0.88 % / 0.57 %, spend $1.42 / $1.08 / $0.65).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from _cli import marketloop

pytestmark = pytest.mark.external

CONTROL = "No E-Mail"
PUBLISHED = {  # per arm: visit, conversion, spend (rounded as published)
    "Mens E-Mail": (0.1828, 0.0125, 1.42),
    "Womens E-Mail": (0.1514, 0.0088, 1.08),
    "No E-Mail": (0.1062, 0.0057, 0.65),
}


@pytest.mark.parametrize("outcome", ["visit", "conversion", "spend"])
def test_average_treatment_effects_reproduced_exactly(shared_data: Path, outcome: str) -> None:
    path = shared_data / "hillstrom" / "hillstrom.csv.gz"
    if not path.is_file():
        pytest.skip(f"Hillstrom data not found at {path}")
    frame = pd.read_csv(path)
    means = frame.groupby("segment")[outcome].mean()
    counts = frame.segment.value_counts()
    out = marketloop(
        "experiment",
        "analyse",
        str(path),
        "--arm-col",
        "segment",
        "--outcome-col",
        outcome,
        "--control",
        CONTROL,
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    column = ("visit", "conversion", "spend").index(outcome)
    for arm, published in PUBLISHED.items():
        assert result["arms"][arm]["n"] == counts[arm]
        assert result["arms"][arm]["mean"] == pytest.approx(means[arm], rel=1e-12)
        assert round(result["arms"][arm]["mean"], 4 if column < 2 else 2) == published[column]
    for arm in ("Mens E-Mail", "Womens E-Mail"):
        effect = result["effects"][arm]
        assert effect["diff"] == pytest.approx(means[arm] - means[CONTROL], rel=1e-12)
        low, high = effect["ci"]
        assert low < effect["diff"] < high and low > 0  # every e-mail effect is positive
    assert result["srm"] is False  # 21,307 / 21,387 / 21,306: an even three-way split
