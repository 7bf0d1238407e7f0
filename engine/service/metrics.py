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
        self.busy = Counter(
            "carepath_events_busy_total",
            "payloads answered 'send again later' (the writer was full, or stopping)",
            ["source"],
            registry=self.registry,
        )
        self.conflicts = Counter(
            "carepath_events_conflict_total",
            "events refused: their id was accepted before with a different body",
            ["source"],
            registry=self.registry,
        )
        self.inflight = Gauge(
            "carepath_events_inflight",
            "events queued for or being decided by the writer",
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
