"""Parsing of text fields against contracts: properties over many generated values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketloop.data._validate import (
    DECIMAL_PATTERN,
    ID_PATTERN,
    INT_PATTERN,
    plain_flags,
    validate,
)
from marketloop.data.schema import ORDER_LINES, ORDERS

CON = ibis.duckdb.connect()
CON.raw_sql("SET TimeZone = 'UTC'")


def run(contract, rows: list[dict[str, str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=contract.names).astype("string")
    frame["_row_no"] = range(1, len(frame) + 1)
    return validate(ibis.memtable(frame), contract).order_by("_row_no").to_pandas()


def line(**fields: str | None) -> dict[str, str | None]:
    base = {
        "order_id": "O1",
        "line_no": "1",
        "product_id": "P1",
        "quantity": "1",
        "unit_price": "1.00",
        "discount": "0",
    }
    return {**base, **fields}


@given(st.integers(1, 10_000), st.sampled_from(["", " ", "  "]), st.sampled_from(["", "+"]))
def test_integers_round_trip_with_spaces_and_sign(n: int, pad: str, sign: str) -> None:
    got = run(ORDER_LINES, [line(quantity=f"{pad}{sign}{n}{pad}")])
    assert got._reason.isna().all() and got.quantity.tolist() == [n]


@given(st.decimals(min_value=0, max_value=999_999, places=4, allow_nan=False))
@example(Decimal("0.0000"))
def test_prices_round_trip_exactly(price: Decimal) -> None:
    got = run(ORDER_LINES, [line(unit_price=str(price))])
    assert got._reason.isna().all()
    assert Decimal(str(got.unit_price.iloc[0])) == price


@pytest.mark.parametrize("text", ["1.5", "1e3", "0x10", "two", "1,000", "--1"])
def test_integers_are_never_rounded_or_guessed(text: str) -> None:
    got = run(ORDER_LINES, [line(quantity=text)])
    assert got._reason.tolist() == ["malformed:quantity"]


@given(
    st.datetimes(min_value=dt.datetime(1990, 1, 2), max_value=dt.datetime(2099, 12, 30)),
    st.integers(-12, 14),
)
def test_timestamps_with_any_offset_land_in_utc(when: dt.datetime, hours: int) -> None:
    when = when.replace(microsecond=0)
    offset = dt.timezone(dt.timedelta(hours=hours))
    text = when.replace(tzinfo=offset).isoformat()
    got = run(
        ORDERS,
        [
            {
                "order_id": "O1",
                "customer_id": "C1",
                "ordered_at": text,
                "currency": "EUR",
                "status": "paid",
                "amount": "1",
            }
        ],
    )
    assert got._reason.isna().all()
    want = when.replace(tzinfo=offset).astimezone(dt.UTC).replace(tzinfo=None)
    assert got.ordered_at.iloc[0].to_pydatetime() == want


def _order(i: int, when: str) -> dict[str, str]:
    return {"order_id": f"O{i}", "customer_id": "C1", "ordered_at": when, "currency": "EUR",
            "status": "paid", "amount": "1"}


@given(st.lists(st.sampled_from([
    ("2024-01-01 10:00:00", dt.datetime(2024, 1, 1, 10)),
    ("2024-07-01T10:00", dt.datetime(2024, 7, 1, 10)),
    ("2024-07-01", dt.datetime(2024, 7, 1)),
    ("2100-12-31 23:59:59", dt.datetime(2100, 12, 31, 23, 59, 59)),
    ("2024-03-01 10:00:00 Europe/Paris", dt.datetime(2024, 3, 1, 9)),
    ("2024-07-01 10:00:00 America/New_York", dt.datetime(2024, 7, 1, 14)),
    ("2024-01-01T10:00:00Z", dt.datetime(2024, 1, 1, 10)),
    ("2024-01-01 10:00:00-05", dt.datetime(2024, 1, 1, 15)),
    (" 2024-01-01T10:00:00+02:00 ", dt.datetime(2024, 1, 1, 8)),
]), min_size=1, max_size=40), st.integers(0, 2_100))
@settings(max_examples=25)
def test_a_named_zone_does_not_move_the_zone_less_times_after_it(
        texts: list[tuple[str, dt.datetime]], padding: int) -> None:
    """DuckDB 1.5's zone-aware cast read the zone-less texts after one with a named zone in
    that zone, to the end of its vector: each text must land at its own UTC time."""
    rows = [_order(0, "2024-03-01 10:00:00 Europe/Paris")]
    rows += [_order(1 + i, "2024-01-01 10:00:00") for i in range(padding)]
    rows += [_order(10_000 + i, text) for i, (text, _) in enumerate(texts)]
    got = run(ORDERS, rows)
    assert got._reason.isna().all()
    want = ([dt.datetime(2024, 3, 1, 9)] + [dt.datetime(2024, 1, 1, 10)] * padding
            + [when for _, when in texts])
    assert [t.to_pydatetime() for t in got.ordered_at] == want


@given(st.text(min_size=1, max_size=20))
def test_any_text_id_is_kept_exactly_or_refused(text: str) -> None:
    got = run(ORDER_LINES, [line(product_id=text)])
    reason = got._reason.iloc[0]
    if pd.isna(reason):
        assert got.product_id.iloc[0] == text and " " not in text
    else:
        assert reason in ("malformed:product_id", "missing:product_id")


def test_the_first_broken_rule_in_column_order_is_the_reason() -> None:
    got = run(ORDER_LINES, [line(order_id="", quantity="-3"), line(quantity="-3", unit_price="x")])
    assert got._reason.tolist() == ["missing:order_id", "out_of_range:quantity"]


# -- plain flags: a cheap check that may vouch for a text, never against it ---------------

PATTERNS = {"id": ID_PATTERN, "int": INT_PATTERN, "price": DECIMAL_PATTERN}
number_like = st.text(alphabet=st.sampled_from(list("0123456789.+- eE_x")), max_size=18)
KINDS = {c.name: c.kind for c in ORDER_LINES.columns}


@given(st.lists(st.one_of(st.text(max_size=140), number_like), min_size=1, max_size=20))
@example(["A" * 128, "A" * 129, "1" * 15, "1" * 16, ".", "5.", ".5", "1.2.3", "", "é1", "١"])
def test_a_plain_flag_is_only_true_where_the_pattern_matches(texts: list[str]) -> None:
    table = plain_flags(pa.table({kind: texts for kind in PATTERNS}), {k: k for k in PATTERNS})
    for kind, pattern in PATTERNS.items():
        flags = table.column(f"_plain_{kind}").to_pylist()
        matched = CON.execute(
            ibis.memtable({"t": texts}).t.re_search(pattern).name("m").as_table()
        ).m.tolist()
        for text, flag, match in zip(texts, flags, matched, strict=True):
            assert not flag or match, (kind, text)


@given(
    st.lists(
        st.fixed_dictionaries({c: st.one_of(st.text(max_size=8), number_like) for c in KINDS}),
        min_size=1,
        max_size=15,
    )
)
def test_plain_flags_change_no_outcome_of_validation(rows: list[dict[str, str]]) -> None:
    table = pa.Table.from_pylist(rows).append_column(
        "_row_no", pa.array(range(1, len(rows) + 1), pa.int64())
    )
    plain = validate(ibis.memtable(table), ORDER_LINES).order_by("_row_no").to_pandas()
    flagged = ibis.memtable(plain_flags(table, KINDS))
    got = validate(flagged, ORDER_LINES).order_by("_row_no").to_pandas()
    pd.testing.assert_frame_equal(got, plain)


@given(
    st.lists(st.text(alphabet="0123456789.+- eé\u00a0", max_size=18), max_size=40),
    st.integers(0, 5),
)
def test_the_byte_count_decimal_flag_equals_its_definition(texts: list[str], cut: int) -> None:
    """Digits with at most one point, 1 to 15 bytes: counted on the bytes as by pyarrow."""
    from marketloop.data._validate import _plain_decimal

    chunks = [pa.array(texts[:cut], pa.string()), pa.array(["x", *texts[cut:]]).slice(1)]
    text = pa.chunked_array(chunks, pa.string())
    one_point_less = pc.replace_substring(text, ".", "", max_replacements=1)
    want = pc.and_(pc.ascii_is_decimal(one_point_less), pc.less_equal(pc.binary_length(text), 15))
    assert _plain_decimal(text).to_pylist() == want.to_pylist()
