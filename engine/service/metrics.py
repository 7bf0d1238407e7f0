"""Prometheus metrics of the service (its own registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from engine.core import Decision


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "carepath_events_accepted_total", "events accepted", ["source"], registry=self.registry
        )
        self.duplicates = Counter(
            "carepath_events_duplicate_total",
            "events refused as duplicates of accepted ones",
            ["source"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "carepath_events_rejected_total",
            "inbound payloads refused (kept as dead letters)",
            ["source"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "carepath_decisions_total", "decisions, by kind", ["kind"], registry=self.registry
        )
        self.actions = Counter(
            "carepath_actions_total",
            "actions by outcome",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.dispatch_lag = Gauge(
            "carepath_dispatch_lag_seconds",
            "age of the oldest action waiting in the outbox",
            registry=self.registry,
        )
        self.timer_lag = Gauge(
            "carepath_timer_lag_seconds",
            "how late the latest due timer fired",
            registry=self.registry,
        )

    def decided(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            for entry in decision.audit:
                self.decisions.labels(entry.kind).inc()
            for action in decision.actions:
                self.actions.labels(action.action, "decided").inc()
