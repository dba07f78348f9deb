"""The service's Prometheus metrics: requests, decisions, events, decision latency."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from marketloop.execution.decide import Decision


class Metrics:
    """One registry per app, so tests and several apps in one process stay apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("marketloop_http_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.decisions = Counter("marketloop_decisions", "Decisions by outcome",
                                 ["action", "channel", "degraded"], registry=self.registry)
        self.events = Counter("marketloop_events", "Events received by type", ["type"],
                              registry=self.registry)
        self.latency = Histogram(
            "marketloop_decide_seconds", "Time to decide, inside the service",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=self.registry)
        # labelled children by label values: prometheus_client's labels() costs ~7 us a call
        self._requests: dict[tuple[str, int], Any] = {}
        self._decisions: dict[tuple[str | None, str | None, bool], Any] = {}

    def request(self, route: str, status: int) -> None:
        child = self._requests.get((route, status))
        if child is None:
            child = self._requests[route, status] = self.requests.labels(route, str(status))
        child.inc()

    def decided(self, d: Decision, seconds: float) -> None:
        key = (d.offer, d.channel, d.degraded)
        child = self._decisions.get(key)
        if child is None:
            child = self._decisions[key] = self.decisions.labels(
                d.offer or "nothing", d.channel or "none", "true" if d.degraded else "false")
        child.inc()
        self.latency.observe(seconds)

    def event(self, kind: str) -> None:
        self.events.labels(kind).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
