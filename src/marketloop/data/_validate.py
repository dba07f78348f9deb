"""Type a staged table of text columns against a contract, with a reason for each bad row.

Everything here is an Ibis expression: the staged text columns go in; the typed columns,
``_row_no`` and ``_reason`` (null for a good row, else the first broken rule) come out.
Reasons are machine-readable: ``missing:<column>``, ``malformed:<column>``,
``out_of_range:<column>``, ``not_allowed:<column>``, ``missing:<a>|<b>`` for a pair of
which one must be filled.
"""

from __future__ import annotations

from collections.abc import Callable

import ibis
import ibis.expr.types as ir

from marketloop.data.schema import ID_PATTERN, MAX_YEAR, MIN_YEAR, Column, TableContract

INT_PATTERN = r"^[+-]?[0-9]{1,15}$"
DECIMAL_PATTERN = r"^[+-]?([0-9]{1,15}(\.[0-9]*)?|\.[0-9]+)$"
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")


def _text(value: ir.StringValue) -> ir.StringValue:
    """Trimmed text, with the empty string read as missing."""
    return value.strip().nullif("")


def _parse(col: Column, text: ir.StringValue) -> tuple[ir.Value, ir.BooleanValue, ir.BooleanValue]:
    """The typed value, whether the text is malformed, whether the value is out of range."""
    false = ibis.literal(False)
    if col.kind == "id":
        return text, ~text.re_search(ID_PATTERN), false
    if col.kind in ("string", "text", "json"):
        if col.allowed is not None:
            folded = text.upper() if col.name == "currency" else text.lower()
            return folded, ~folded.isin(col.allowed), false
        return text, false, false
    if col.kind == "timestamp":
        value = text.try_cast(ibis.dtype("timestamp('UTC')")).cast("timestamp")
        year = value.year()
        return value, value.isnull(), (year < MIN_YEAR) | (year > MAX_YEAR)
    if col.kind == "bool":
        lowered = text.lower()
        value = ibis.cases((lowered.isin(TRUE_WORDS), True), (lowered.isin(FALSE_WORDS), False))
        return value, ~lowered.isin(TRUE_WORDS + FALSE_WORDS), false
    pattern = INT_PATTERN if col.kind == "int" else DECIMAL_PATTERN
    well_formed = text.re_search(pattern)
    if col.kind == "float":
        value = text.try_cast("float64")
        well_formed = value.notnull() & value.isinf().negate() & value.isnan().negate()
    else:
        value = ibis.ifelse(well_formed, text, ibis.null("string")).try_cast(col.ibis_type)
        well_formed = well_formed & value.notnull()
    out = ibis.literal(False)
    if col.low is not None:
        out = out | (value < col.low)
    if col.high is not None:
        out = out | (value > col.high)
    return value, ~well_formed, out


Checks = Callable[[dict[str, ir.Value]], list[tuple[ir.BooleanValue, str]]]


def validate(staged: ibis.Table, contract: TableContract, *, checks: Checks | None = None) -> ibis.Table:
    """Typed columns of ``contract``, ``_row_no`` and ``_reason`` for every staged row.

    Parameters
    ----------
    staged : ibis.Table
        Text columns named as the contract's (missing optional columns may be absent)
        and ``_row_no``.
    contract : TableContract
        The rules every row must keep.
    checks : callable, optional
        Layout-specific rules: given the typed values by column, ``(broken, reason)`` pairs
        checked after the contract's own.

    Returns
    -------
    ibis.Table
        The contract's columns with their types, ``_row_no``, ``_reason`` (string, null
        when the row keeps every rule) and ``_raw`` (the text fields as a JSON object, for
        refused rows only).
    """
    typed: dict[str, ir.Value] = {}
    rules: list[tuple[ir.BooleanValue, str]] = []
    for col in contract.columns:
        if col.name not in staged.columns:
            typed[col.name] = ibis.null(col.ibis_type)
            continue
        text = _text(staged[col.name].cast("string"))
        value, malformed, out_of_range = _parse(col, text)
        typed[col.name] = value.cast(col.ibis_type)
        if col.required:
            rules.append((text.isnull(), f"missing:{col.name}"))
        not_allowed = col.allowed is not None
        rules.append(
            (text.notnull() & malformed, f"{'not_allowed' if not_allowed else 'malformed'}:{col.name}")
        )
        rules.append((text.notnull() & out_of_range, f"out_of_range:{col.name}"))
    if contract.one_of:
        empty = ibis.and_(*[_text(staged[c].cast("string")).isnull() for c in contract.one_of if c in staged.columns])
        rules.insert(0, (empty, f"missing:{'|'.join(contract.one_of)}"))
    if checks is not None:
        rules.extend(checks(typed))
    reason = ibis.cases(*rules, else_=ibis.null("string")) if rules else ibis.null("string")
    raw = ibis.ifelse(reason.notnull(), raw_json(staged), ibis.null("string"))
    return staged.select(**typed, _row_no=staged._row_no, _reason=reason, _raw=raw)


def raw_json(staged: ibis.Table) -> ir.StringValue:
    """The staged row's text fields as one JSON object string (for the quarantine)."""
    fields = {c: staged[c].cast("string") for c in staged.columns if not c.startswith("_")}
    return ibis.struct(fields).cast("json").cast("string")
