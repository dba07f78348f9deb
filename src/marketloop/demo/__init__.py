"""The demo: the loop run end to end on a simulated shop, written up as one HTML report."""

from __future__ import annotations

from marketloop.demo._run import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
