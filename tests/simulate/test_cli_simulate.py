"""``marketloop simulate`` as users run it: a subprocess, files, exit codes, messages."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "marketloop", "simulate", *args],
                          capture_output=True, text=True, timeout=120)


def test_simulate_writes_the_export(tmp_path) -> None:
    out = tmp_path / "shop"
    res = _run("--customers", "300", "--days", "30", "--seed", "1", "--out", str(out),
               "--dirty-rate", "0.05")
    assert res.returncode == 0, res.stderr
    for name in ("customers", "products", "orders", "order_lines", "events", "texts",
                 "consents"):
        assert (out / f"{name}.csv").exists()
    assert (out / "manifest.json").exists() and (out / "truth" / "dirty_rows.csv").exists()
    assert "orders.csv" in res.stdout


@pytest.mark.parametrize("args", [("--customers", "-5"), ("--dirty-rate", "0.9"),
                                  ("--format", "xlsx"), ("--scenario", "meteor")])
def test_bad_option_is_one_line_and_exit_2(tmp_path, args) -> None:
    res = _run("--out", str(tmp_path / "x"), *args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("n", ["1", "2"])
def test_a_shop_of_one_or_two_customers_is_simulated(tmp_path, n: str) -> None:
    res = _run("--customers", n, "--days", "30", "--out", str(tmp_path / "shop"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "shop" / "customers.csv").read_text().count("\n") == int(n) + 1


def test_an_out_that_is_a_file_exits_2(tmp_path) -> None:
    (tmp_path / "orders.csv").write_text("x\n")
    res = _run("--customers", "10", "--days", "10", "--out", str(tmp_path / "orders.csv"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--out: expected a folder to write into" in res.stderr
