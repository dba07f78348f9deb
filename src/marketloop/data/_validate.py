"""Type a staged table of text columns against a contract, with a reason for each bad row.

Everything here is an Ibis expression: the staged text columns go in; the typed columns,
``_row_no``, ``_reason`` (null for a good row, else the first broken rule, in column
order) and, for columns whose text a failed conversion would lose, ``_text_<column>``
come out. Reasons are machine-readable: ``missing:<column>``, ``malformed:<column>``,
``out_of_range:<column>``, ``not_allowed:<column>``, ``missing:<a>|<b>`` for a pair of
which one must be filled, and whatever a layout's own checks add.

The expression is shaped for speed on ten million rows: each rule of each column appears
once in the SQL (a ``COALESCE`` of one ``CASE`` per column), identifiers are matched
as they are (an identifier with surrounding spaces is malformed), and numbers are matched
by one pattern that admits surrounding spaces before they are converted. A regular
expression costs about 100 ns a row; where the staged table carries ``_plain_<column>``
flags (see :func:`plain_flags`, the one pyarrow step here), the pattern is matched only
where the flag is not true.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketloop.data.schema import ID_PATTERN, MAX_YEAR, MIN_YEAR, Column, TableContract

INT_PATTERN = r"^\s*[+-]?[0-9]{1,15}\s*$"
DECIMAL_PATTERN = r"^\s*[+-]?([0-9]{1,15}(\.[0-9]*)?|\.[0-9]+)\s*$"
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")

Checks = Callable[[dict[str, ir.Value]], list[tuple[ir.BooleanValue, str]]]

#: Kinds whose conversion can fail and lose the text (kept in ``_text_<column>``).
CONVERTED = ("timestamp", "money", "price", "int", "float", "bool")


#: Kinds whose texts :func:`plain_flags` can vouch for.
CERTIFIED = ("id", "int", "money", "price")


def plain_flags(table: pa.Table, kinds: Mapping[str, str]) -> pa.Table:
    """``table`` with ``_plain_<column>`` for its id, int and decimal columns.

    The flag is true where a cheap vectorised check proves the text keeps the column's
    pattern: 1 to 128 ASCII letters and digits are an identifier (``ID_PATTERN``); 1 to 15
    ASCII digits an integer (``INT_PATTERN``); 1 to 15 characters, ASCII digits with at most
    one point among them, a decimal (``DECIMAL_PATTERN``). False proves nothing: there
    :func:`validate` matches the pattern. The columns are checked in two threads (pyarrow
    releases the GIL).
    """
    names = [c for c in table.column_names if kinds.get(c) in CERTIFIED]

    def flag(name: str) -> pa.ChunkedArray:
        text, kind = table.column(name), kinds[name]
        if kind == "id":
            shape, longest = pc.ascii_is_alnum(text), 128
        elif kind == "int":
            shape, longest = pc.ascii_is_decimal(text), 15
        else:
            return _plain_decimal(text)
        return pc.and_(shape, pc.less_equal(pc.binary_length(text), longest))

    with ThreadPoolExecutor(max_workers=2) as pool:
        flags = list(pool.map(flag, names))
    for name, values in zip(names, flags, strict=True):
        table = table.append_column(f"_plain_{name}", values)
    return table


def _plain_decimal(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a text is 1 to 15 bytes of ASCII digits with at most one point among them.

    Counted on the bytes with numpy (one ``add.reduceat`` over each string's span of a
    weight per byte: 1 for a point, 16 for any other non-digit): removing the point with
    ``replace_substring`` copied every string and cost about twice as much.
    """
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        one_point_less = pc.replace_substring(text, ".", "", max_replacements=1)
        return pc.and_(pc.ascii_is_decimal(one_point_less),
                       pc.less_equal(pc.binary_length(text), 15))
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    flags = []
    for chunk in text.chunks:
        if len(chunk) == 0:
            flags.append(pa.array([], pa.bool_()))
            continue
        _, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=width)[chunk.offset :][: len(chunk) + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf else np.zeros(0, np.uint8)
        body = data[offsets[0] : offsets[-1]]
        # per byte: 1 for a point, 16 for anything else that is not a digit; one element
        # more than the bytes, so an empty last string still has a start
        weights = np.zeros(len(body) + 1, dtype=np.uint8)
        np.greater_equal(body - np.uint8(48), 10, out=weights[:-1].view(bool))
        weights[:-1] <<= 4
        weights[:-1] -= (body == 46) * np.uint8(15)  # a point: 16 - 15
        counts = np.add.reduceat(weights, offsets[:-1] - offsets[0], dtype=np.int32)
        n_points, n_others = counts & 15, counts >> 4
        length = np.diff(offsets)
        # reduceat gives an empty span its next element, not 0: empty texts are false anyway;
        # past 15 bytes the points may spill into the other count, but such texts are false
        ok = (length > 0) & (n_others == 0) & (n_points <= 1) & (length > n_points)
        flag = pa.array(ok & (length <= 15))
        flags.append(pc.and_(flag, chunk.is_valid()) if chunk.null_count else flag)
    return pa.chunked_array(flags, pa.bool_())


def _parse(
    col: Column, text: ir.StringValue, plain: ir.BooleanValue | None = None
) -> tuple[ir.Value, ir.BooleanValue | None, ir.BooleanValue | None]:
    """The typed value, the malformed test and the out-of-range test (None: cannot happen).

    ``plain`` (see :func:`plain_flags`) spares the pattern where it is true.
    """

    def matches(pattern: str) -> ir.BooleanValue:
        found = text.re_search(pattern)
        return found if plain is None else ibis.cases((plain, True), else_=found)

    if col.kind == "id":
        return text, ~matches(ID_PATTERN), None
    if col.kind in ("string", "text", "json"):
        if col.allowed is None:
            return text, None, None
        folded = text.strip()
        folded = folded.upper() if col.name == "currency" else folded.lower()
        return folded, ~folded.isin(col.allowed), None
    if col.kind == "timestamp":
        value = _timestamp(text)
        year = value.year()
        return value, value.isnull(), (year < MIN_YEAR) | (year > MAX_YEAR)
    if col.kind == "bool":
        folded = text.strip().lower()
        value = ibis.cases((folded.isin(TRUE_WORDS), True), (folded.isin(FALSE_WORDS), False))
        return value, value.isnull(), None
    if col.kind == "float":
        value = text.try_cast("float64")
        return value, value.isnull() | value.isinf() | value.isnan(), _bounds(col, value)
    pattern = INT_PATTERN if col.kind == "int" else DECIMAL_PATTERN
    value = ibis.ifelse(matches(pattern), text, ibis.null("string")).try_cast(col.ibis_type)
    return value, value.isnull(), _bounds(col, value)


def _timestamp(text: ir.StringValue) -> ir.TimestampValue:
    """A date or date-time text as a UTC timestamp: converted from its offset or zone, read
    as UTC without one.

    Only texts that carry a zone go through DuckDB's zone-aware cast: in DuckDB 1.5 a text
    with a named zone (``2024-03-01 10:00:00 Europe/Paris``) made the same cast read the
    zone-less texts after it, up to the end of the vector (2,048 rows), in that zone.
    A zone is an offset (``+02:00``, ``-05``) after the date or a trailing letter (``Z``,
    ``UTC``, ``Europe/Paris``).
    """
    value = text.strip()
    tail, last = value.substr(10), value.right(1)
    zoned = tail.contains("+") | tail.contains("-") | (last.upper() != last.lower())
    return ibis.ifelse(zoned, value.try_cast(ibis.dtype("timestamp('UTC')")).cast("timestamp"),
                       value.try_cast("timestamp"))


def _bounds(col: Column, value: ir.NumericValue) -> ir.BooleanValue | None:
    out = None
    if col.low is not None:
        out = value < col.low
    if col.high is not None:
        out = (value > col.high) if out is None else (out | (value > col.high))
    return out


def validate(
    staged: ibis.Table, contract: TableContract, *, checks: Checks | None = None
) -> ibis.Table:
    """Typed columns of ``contract``, ``_row_no``, ``_reason`` and lost texts for every row.

    Parameters
    ----------
    staged : ibis.Table
        Text columns named as the contract's (missing optional columns may be absent),
        where the reader numbers records ``_row_no`` (passed through), and optionally
        ``_plain_<column>`` flags from :func:`plain_flags`.
    contract : TableContract
        The rules every row must keep.
    checks : callable, optional
        Layout-specific rules: given the typed values by column, ``(broken, reason)`` pairs
        checked after the contract's own.

    Returns
    -------
    ibis.Table
        The contract's columns with their types, ``_row_no``, ``_reason`` (string, null
        when the row keeps every rule), and ``_text_<column>`` for each converted column:
        the text when it could not be converted, else null.
    """
    typed: dict[str, ir.Value] = {}
    lost: dict[str, ir.Value] = {}
    column_reasons: list[ir.StringValue] = []
    for col in contract.columns:
        if col.name not in staged.columns:
            typed[col.name] = ibis.null(col.ibis_type)
            continue
        text = staged[col.name].cast("string").nullif("")
        flag = f"_plain_{col.name}"
        plain = staged[flag] if flag in staged.columns else None
        value, malformed, out_of_range = _parse(col, text, plain)
        typed[col.name] = value.cast(col.ibis_type)
        rules: list[tuple[ir.BooleanValue, str]] = []
        if col.required:
            rules.append((text.isnull(), f"missing:{col.name}"))
        if malformed is not None:
            word = "not_allowed" if col.allowed is not None else "malformed"
            rules.append((text.notnull() & malformed, f"{word}:{col.name}"))
        if out_of_range is not None:
            rules.append((out_of_range, f"out_of_range:{col.name}"))
        if rules:
            column_reasons.append(ibis.cases(*rules, else_=ibis.null("string")))
        if col.kind in CONVERTED:
            lost[f"_text_{col.name}"] = ibis.ifelse(value.isnull(), text, ibis.null("string"))
    if contract.one_of:
        present = [c for c in contract.one_of if c in staged.columns]
        empty = ibis.and_(*[staged[c].cast("string").nullif("").isnull() for c in present])
        column_reasons.insert(
            0, ibis.ifelse(empty, f"missing:{'|'.join(contract.one_of)}", ibis.null("string"))
        )
    if checks is not None:
        extra = checks(typed)
        if extra:
            column_reasons.append(ibis.cases(*extra, else_=ibis.null("string")))
    reason = (
        ibis.coalesce(*column_reasons)
        if len(column_reasons) > 1
        else (column_reasons[0] if column_reasons else ibis.null("string"))
    )
    numbered = {"_row_no": staged._row_no} if "_row_no" in staged.columns else {}
    return staged.select(**typed, **numbered, _reason=reason, **lost)


def raw_json(typed: ibis.Table, contract: TableContract) -> ir.StringValue:
    """A refused row as one JSON object of its texts (converted values where nothing was lost)."""
    fields = {}
    for col in contract.columns:
        value = typed[col.name].cast("string")
        lost = f"_text_{col.name}"
        fields[col.name] = typed[lost].fill_null(value) if lost in typed.columns else value
    return ibis.struct(fields).cast("json").cast("string")
