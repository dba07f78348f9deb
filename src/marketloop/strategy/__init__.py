"""Strategy: who gets what. RFM segmentation is the traditional baseline."""

from __future__ import annotations

from marketloop.strategy.rfm import (
    DEFAULT_RULES,
    RFM_COLUMNS,
    SegmentRule,
    assign_segments,
    check_rules,
    rfm_inputs,
    rfm_scores,
    rfm_segments,
    segment_summary,
)

__all__ = [
    "DEFAULT_RULES",
    "RFM_COLUMNS",
    "SegmentRule",
    "assign_segments",
    "check_rules",
    "rfm_inputs",
    "rfm_scores",
    "rfm_segments",
    "segment_summary",
]
