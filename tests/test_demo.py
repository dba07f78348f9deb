"""`marketloop demo` end to end, as `make demo` runs it (smaller shop, same stages)."""

from __future__ import annotations

import re
from pathlib import Path

from _cli import marketloop

DEMO = ("demo", "--customers", "2000", "--days", "120")


def test_demo_writes_a_self_contained_report_and_catches_every_broken_row(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    result = marketloop(*DEMO, "--out", str(out))
    assert result.returncode == 0, result.stderr
    found = re.search(
        r"read ([\d,]+) = accepted ([\d,]+) \+ duplicates ([\d,]+) \+ quarantined ([\d,]+); "
        r"broken rows caught ([\d,]+)/([\d,]+)",
        result.stdout,
    )
    assert found, result.stdout
    read, accepted, duplicates, quarantined, caught, broken = (
        int(g.replace(",", "")) for g in found.groups()
    )
    assert read == accepted + duplicates + quarantined
    assert broken > 0 and caught == broken
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 11
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    for text in (
        "Ingest: every row accounted for",
        "RFM segments",
        "champions",
        "Customer lifetime value",
        "Churn lift",
        "truth (the customer has left by the end of the 90 days)",
        "Learning offers online",
        "Who is worth a coupon",
        "Qini curves on the held-out half of the test",
    ):
        assert text in html
    assert (out / "marketloop.duckdb").exists()
    seasons = re.findall(r"season: (\S+) profit ([\d,]+) vs A/B/n test ([\d,]+)", result.stdout)
    assert {name for name, _, _ in seasons} == {"LinUCB", "epsilon-greedy"}
    campaign = re.search(r"campaign: uplift plan (-?\d+)% of the oracle's true incremental "
                         r"profit, RFM rule (-?\d+)%, random (-?\d+)%", result.stdout)
    assert campaign, result.stdout
    uplift, rfm, _random = (int(g) for g in campaign.groups())
    assert uplift <= 100
    # a second run starts from a fresh warehouse and gives the same accounting
    again = marketloop(*DEMO, "--out", str(out))
    assert again.returncode == 0 and found.group(0) in again.stdout
