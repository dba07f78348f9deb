"""What the service reads at start: a campaign plan file, and the warehouse's consents."""

from __future__ import annotations

import asyncio
from pathlib import Path

from marketloop.exceptions import ConfigError, describe
from marketloop.execution.state import State


def load_plan(path: Path | None) -> dict[str, tuple[str, str]]:
    """Customer id -> (offer, reason) of the customers a plan sends an offer to.

    The plan is ``marketloop plan campaign``'s CSV (customer_id, offer, ..., reason).
    """
    if path is None:
        return {}
    import pandas as pd

    if not Path(path).is_file():
        raise ConfigError(describe(f"plan {path}", "a plan CSV (marketloop plan campaign)",
                                   "nothing at that path"))
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas parser errors: not a CSV
        raise ConfigError(describe(f"plan {path}", "a plan CSV",
                                   str(exc).splitlines()[0])) from None
    missing = [c for c in ("customer_id", "offer", "reason") if c not in frame.columns]
    if missing:
        raise ConfigError(describe(f"plan {path}", "columns customer_id, offer, reason",
                                   f"{', '.join(frame.columns)} ({', '.join(missing)} missing)"))
    sent = frame[frame["offer"].str.strip() != ""]
    return dict(zip(sent["customer_id"], zip(sent["offer"], sent["reason"], strict=True),
                    strict=True))


LOCK_WAIT_S = 30.0  # workers start together: each waits while another reads the warehouse


async def load_consents(state: State, warehouse_url: str) -> int:
    """Copy the warehouse's ``consents`` table into the state store; returns the rows.

    The read (and any wait for another worker's lock on the file) runs in a thread.
    """
    rows = await asyncio.to_thread(_read_consents, warehouse_url)
    for row in rows:
        await state.set_consent(str(row["customer_id"]), str(row["channel"]),
                                str(row["purpose"]), bool(row["granted"]))
    return len(rows)


def _read_consents(warehouse_url: str) -> list[dict]:
    from marketloop.data.warehouse import connect, ensure_warehouse

    con = connect(warehouse_url, lock_wait_s=LOCK_WAIT_S)
    try:
        ensure_warehouse(con)
        return con.table("consents").select("customer_id", "channel", "purpose",
                                             "granted").to_pyarrow().to_pylist()
    finally:
        con.disconnect()


def load_responsiveness(warehouse_url: str, *, prior: float = 5.0
                        ) -> dict[str, dict[str, float]]:
    """Each customer's response rate per channel, from the decision log in the warehouse.

    Conversions after contacts on a channel over contacts, shrunk toward the channel's rate
    over all customers by ``prior`` pseudo-contacts: ``(conv + prior * mean) / (n + prior)``.
    Only customers with at least one logged contact appear.
    """
    import ibis

    from marketloop.data.warehouse import connect, ensure_warehouse

    con = connect(warehouse_url, lock_wait_s=LOCK_WAIT_S)
    try:
        ensure_warehouse(con)
        d, o = con.table("decisions"), con.table("outcomes")
        sent = d.filter(d.action != "nothing").mutate(
            channel=d.action.re_extract(r"@([a-z_]+)$", 1))
        conv = o.filter(o.kind == "conversion").select("decision_id").distinct().mutate(
            converted=ibis.literal(1))
        joined = sent.left_join(conv, "decision_id")
        per = joined.group_by(["customer_id", "channel"]).aggregate(
            contacts=joined.decision_id.count(),
            conversions=joined.converted.fill_null(0).sum())
        frame = per.to_pandas()
    finally:
        con.disconnect()
    if frame.empty:
        return {}
    totals = frame.groupby("channel")[["conversions", "contacts"]].sum()
    mean = (totals["conversions"] / totals["contacts"]).to_dict()
    out: dict[str, dict[str, float]] = {}
    for row in frame.itertuples(index=False):
        rate = (row.conversions + prior * mean[row.channel]) / (row.contacts + prior)
        out.setdefault(str(row.customer_id), {})[str(row.channel)] = float(rate)
    return out
