"""Value: what marketing with marketloop earns, shown in self-contained reports."""

from __future__ import annotations

from marketloop.value._charts import (
    ingest_accounting_chart,
    quarantine_reasons_chart,
    segment_sizes_chart,
    segment_values_chart,
)
from marketloop.value.report import Report

__all__ = [
    "Report",
    "ingest_accounting_chart",
    "quarantine_reasons_chart",
    "segment_sizes_chart",
    "segment_values_chart",
]
