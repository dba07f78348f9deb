"""The service's Prometheus metrics: requests, decisions, events, decision latency."""

from __future__ import annotations

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

    def request(self, route: str, status: int) -> None:
        self.requests.labels(route, str(status)).inc()

    def decided(self, d: Decision, seconds: float) -> None:
        self.decisions.labels(d.offer or "nothing", d.channel or "none",
                              "true" if d.degraded else "false").inc()
        self.latency.observe(seconds)

    def event(self, kind: str) -> None:
        self.events.labels(kind).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
