"""The command line as users run it: a real subprocess, exit codes and messages."""

from __future__ import annotations

import pytest

from _cli import marketloop


def test_version_prints_the_package_version() -> None:
    from marketloop import __version__

    result = marketloop("version")
    assert result.returncode == 0
    assert result.stdout.strip() == __version__


def test_unknown_command_exits_2_without_traceback() -> None:
    result = marketloop("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "No such command" in result.stderr


@pytest.mark.parametrize("command", [
    ["simulate", "--customers", "100", "--days", "10", "--out", "x"],
    ["demo", "--out", "x"],
    ["recommend", "evaluate", "x"],
])
def test_a_negative_seed_exits_2_naming_the_option(command: list[str], tmp_path) -> None:
    result = marketloop(*command, "--seed", "-1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--seed" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


def test_recommend_with_a_cut_that_is_no_date_exits_2(tmp_path) -> None:
    (tmp_path / "i.csv").write_text("customer_id,product_id,ts\na,b,2020-01-01\na,c,2020-02-01\n")
    result = marketloop("recommend", "evaluate", "i.csv", "--user-col", "customer_id",
                        "--item-col", "product_id", "--time-col", "ts", "--cut", "notadate",
                        "--models", "popularity", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "cut: expected a date" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("plan", [
    ["plan", "winback", "--as-of", "2025-03-01"],
    ["plan", "campaign", "--offers", "o.toml", "--budget", "5", "--scores", "s.csv"],
])
def test_a_plan_out_that_is_a_folder_or_has_none_exits_2(plan: list[str], tmp_path) -> None:
    (tmp_path / "adir").mkdir()
    for out, words in (("adir", "expected a file name to write"),
                       ("nodir/plan.csv", "expected a file in an existing folder")):
        result = marketloop(*plan, "--out", out, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert words in result.stderr, result.stderr
    assert not (tmp_path / "nodir").exists()
