"""``marketloop train`` and ``marketloop predict`` end to end on a simulated shop's export."""

from __future__ import annotations

import json

import duckdb
import pytest

from _cli import marketloop
from marketloop.simulate import Market, write_export

TRAIN_AS_OF = "2025-08-01"  # the simulated period is 2025-01-01 .. 2025-08-29
PREDICT_AS_OF = "2025-08-29"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A file-backed DuckDB warehouse loaded with the real ``ingest`` command."""
    root = tmp_path_factory.mktemp("train_cli")
    data = Market(n_customers=2_000, n_days=240, random_state=3).simulate()
    write_export(data, root / "export")
    url = f"duckdb:///{root}/shop.duckdb"
    result = marketloop("ingest", str(root / "export"), "--warehouse", url)
    assert result.returncode == 0, result.stderr
    return root, url


def _rows(root, sql):
    con = duckdb.connect(str(root / "shop.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def trained(shop):
    root, url = shop
    models = root / "models"
    versions = {}
    for kind in ("clv", "churn"):
        result = marketloop("train", kind, "--as-of", TRAIN_AS_OF, "--warehouse", url,
                            "--models-dir", str(models), "--json")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        versions[kind] = summary["model_version"]
        assert summary["path"].endswith(f"{kind}-{TRAIN_AS_OF}-{summary['model_version']}.pkl")
        meta = json.loads((models / f"{kind}-{TRAIN_AS_OF}-{versions[kind]}.json").read_text())
        assert meta["version"] == versions[kind] and meta["as_of"].startswith(TRAIN_AS_OF)
    return models, versions


@pytest.fixture(scope="module")
def predicted(shop, trained):
    root, url = shop
    models, _ = trained
    result = marketloop("predict", "--as-of", PREDICT_AS_OF, "--warehouse", url,
                        "--models-dir", str(models), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_predictions_one_row_per_customer_and_quantity(shop, trained, predicted) -> None:
    root, _ = shop
    _, versions = trained
    assert {m["model"] for m in predicted["models"]} == {"clv", "churn"}
    dupes = _rows(root, "SELECT count(*) FROM (SELECT customer_id, as_of, model, quantity "
                        "FROM predictions GROUP BY ALL HAVING count(*) > 1)")
    assert dupes == [(0,)]
    per_quantity = dict(
        (q, n) for q, n in _rows(root, "SELECT quantity, count(DISTINCT customer_id) "
                                       "FROM predictions GROUP BY quantity")
    )
    assert set(per_quantity) == {"expected_purchases_52w", "p_alive", "expected_spend",
                                 "clv_12m", "p_churn"}
    clv_counts = {per_quantity[q] for q in ("expected_purchases_52w", "p_alive",
                                            "expected_spend", "clv_12m")}
    assert len(clv_counts) == 1  # every CLV quantity for every buyer
    # churn scores every customer known before as_of; CLV the buyers among them
    known = _rows(root, f"SELECT count(*) FROM customers WHERE first_seen < "
                        f"TIMESTAMP '{PREDICT_AS_OF}' OR customer_id IN (SELECT customer_id "
                        f"FROM orders WHERE ordered_at < TIMESTAMP '{PREDICT_AS_OF}')")[0][0]
    assert per_quantity["p_churn"] == known
    assert 0 < clv_counts.pop() <= known
    versions_seen = dict(_rows(root, "SELECT model, any_value(model_version) FROM predictions "
                                     "GROUP BY model HAVING count(DISTINCT model_version) = 1"))
    assert versions_seen == versions


def test_probabilities_in_unit_interval_and_values_finite(shop, predicted) -> None:
    root, _ = shop
    lo, hi, n = _rows(root, "SELECT min(value), max(value), count(*) FROM predictions "
                            "WHERE quantity IN ('p_alive', 'p_churn')")[0]
    assert n > 0 and 0.0 <= lo and hi <= 1.0
    bad = _rows(root, "SELECT count(*) FROM predictions WHERE NOT isfinite(value) "
                      "OR (quantity IN ('expected_spend', 'clv_12m', 'expected_purchases_52w') "
                      "AND value < 0)")
    assert bad == [(0,)]
    as_of = _rows(root, "SELECT DISTINCT as_of FROM predictions")
    assert [str(v[0].date()) for v in as_of] == [PREDICT_AS_OF]


def test_rerunning_predict_replaces_rows(shop, trained, predicted) -> None:
    root, url = shop
    models, _ = trained
    before = _rows(root, "SELECT count(*) FROM predictions")[0][0]
    result = marketloop("predict", "--as-of", PREDICT_AS_OF, "--warehouse", url,
                        "--models-dir", str(models), "--json")
    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert [m["replaced"] for m in again["models"]] == [m["rows"] for m in predicted["models"]]
    assert _rows(root, "SELECT count(*) FROM predictions")[0][0] == before


def test_bad_as_of_exits_2_with_one_line(shop, trained) -> None:
    _, url = shop
    models, _ = trained
    for args in (("train", "churn"), ("predict",)):
        result = marketloop(*args, "--as-of", "2025-13-45", "--warehouse", url,
                            "--models-dir", str(models))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "--as-of" in lines[0] and "2025-13-45" in lines[0]
        assert "Traceback" not in result.stderr


def test_predict_far_past_the_data_says_so(shop, trained, tmp_path) -> None:
    import shutil

    root, _ = shop
    models, _ = trained
    shutil.copy(root / "shop.duckdb", tmp_path / "copy.duckdb")  # the module's stays as it is
    url = f"duckdb:///{tmp_path}/copy.duckdb"
    result = marketloop("predict", "--as-of", "2027-06-01", "--warehouse", url,
                        "--models-dir", str(models))
    assert result.returncode == 0, result.stderr
    assert "WARNING: --as-of is" in result.stderr and "extrapolate past the data" in result.stderr
    quiet = marketloop("predict", "--as-of", PREDICT_AS_OF, "--warehouse", url,
                       "--models-dir", str(models))
    assert "WARNING" not in quiet.stderr


def test_predict_without_a_trained_model_says_to_train(shop, tmp_path) -> None:
    _, url = shop
    result = marketloop("predict", "--as-of", PREDICT_AS_OF, "--warehouse", url,
                        "--models-dir", str(tmp_path / "empty"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "marketloop train" in lines[0]


@pytest.mark.parametrize(("damage", "words"), [
    ("empty pickle", "the pickled churn model its .json names; found EOFError"),
    ("clv pickle", "expected a churn model; found a dict"),
    ("list json", "(kind, as_of, version, file); found list"),
    ("garbage json", "a model's metadata saved by `marketloop train`"),
    ("bad as_of", "as_of: expected an ISO time; found 'bad'"),
])
def test_a_damaged_model_file_exits_2_naming_it(shop, trained, tmp_path, damage: str,
                                                 words: str) -> None:
    import shutil

    _, url = shop
    models, versions = trained
    folder = tmp_path / "models"
    folder.mkdir()
    stem = f"churn-{TRAIN_AS_OF}-{versions['churn']}"
    for suffix in (".json", ".pkl"):
        shutil.copy(models / f"{stem}{suffix}", folder / f"{stem}{suffix}")
    meta_path, pickle_path = folder / f"{stem}.json", folder / f"{stem}.pkl"
    meta = json.loads(meta_path.read_text())
    if damage == "empty pickle":
        pickle_path.write_bytes(b"")
    elif damage == "clv pickle":
        shutil.copy(models / f"clv-{TRAIN_AS_OF}-{versions['clv']}.pkl", pickle_path)
    elif damage == "list json":
        meta_path.write_text("[]")
    elif damage == "garbage json":
        meta_path.write_text("garbage")
    else:
        meta_path.write_text(json.dumps({**meta, "as_of": "bad"}))
    result = marketloop("predict", "--as-of", PREDICT_AS_OF, "--warehouse", url,
                        "--models-dir", str(folder))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and str(folder) in lines[0], lines


def test_train_refuses_too_few_customers_to_calibrate(tmp_path) -> None:
    data = Market(n_customers=15, n_days=30, random_state=5).simulate()
    write_export(data, tmp_path / "export")
    url = f"duckdb:///{tmp_path}/tiny.duckdb"
    assert marketloop("ingest", str(tmp_path / "export"), "--warehouse", url).returncode == 0
    for kind in ("churn", "next-purchase"):
        result = marketloop("train", kind, "--as-of", "2025-01-31", "--horizon-days", "14",
                            "--warehouse", url, "--models-dir", str(tmp_path / "m"))
        assert result.returncode == 2, result.stderr
        assert "customers of each outcome" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("m/*.pkl"))


def test_train_refuses_a_label_window_beyond_the_data(shop, tmp_path) -> None:
    _, url = shop
    result = marketloop("train", "churn", "--as-of", "2026-06-01", "--warehouse", url,
                        "--models-dir", str(tmp_path / "m"))
    assert result.returncode == 2
    assert "last order" in result.stderr and not list((tmp_path).glob("m/*.pkl"))


@pytest.mark.postgres
def test_predict_on_postgresql_writes_the_same_predictions(shop, trained, predicted, pg_url):
    """The models trained on DuckDB score the same shop on PostgreSQL to the same numbers."""
    import pandas as pd
    import psycopg

    root, _ = shop
    models, _ = trained
    result = marketloop("ingest", str(root / "export"), "--warehouse", pg_url)
    assert result.returncode == 0, result.stderr
    result = marketloop("predict", "--as-of", PREDICT_AS_OF, "--warehouse", pg_url,
                        "--models-dir", str(models), "--json")
    assert result.returncode == 0, result.stderr
    assert [m["rows"] for m in json.loads(result.stdout)["models"]] == [
        m["rows"] for m in predicted["models"]
    ]
    base, _, options = pg_url.partition("?options=-csearch_path%3D")
    with psycopg.connect(base) as con:
        columns = "customer_id, model, quantity, value, model_version"
        rows = con.execute(f'SELECT {columns} FROM "{options}".predictions').fetchall()
    ours = pd.DataFrame(rows, columns=["customer_id", "model", "quantity", "value", "version"])
    want = pd.DataFrame(
        _rows(root, "SELECT customer_id, model, quantity, value, model_version FROM predictions"),
        columns=ours.columns,
    )
    key = ["customer_id", "model", "quantity"]
    both = want.merge(ours, on=key, suffixes=("_duckdb", "_pg"), validate="one_to_one")
    assert len(both) == len(want) == len(ours)
    assert (both.version_duckdb == both.version_pg).all()
    assert abs(both.value_duckdb - both.value_pg).max() < 1e-9
