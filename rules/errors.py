"""Errors of the rule layer, part of the one error tree in `engine.errors`.

    CarepathError
    └── RulesError                 base of everything `rules/` raises on purpose
        ├── RuleCompileError       a rule book durable-rules cannot run faithfully
        ├── FactError              a fact value the rule layer cannot represent
        └── RuleEngineError        durable-rules failed while evaluating (also a RuntimeFailure)

Each carries the rule book's name and, where there is one, the event type, rule id or fact.
"""

from __future__ import annotations

from engine.errors import CarepathError, RuntimeFailure


class RulesError(CarepathError):
    """Base of the rule layer's errors."""

    def __init__(self, message: str, *, ruleset: str, event_type: str | None = None) -> None:
        self.ruleset = ruleset
        self.event_type = event_type
        where = f"rule book {ruleset!r}" + (f", event type {event_type!r}" if event_type else "")
        super().__init__(f"{where}: {message}")


class RuleCompileError(RulesError):
    """The rule book cannot be compiled into a ruleset that gives the reference answers."""

    def __init__(
        self,
        message: str,
        *,
        ruleset: str,
        rule_id: str | None = None,
        event_type: str | None = None,
    ) -> None:
        self.rule_id = rule_id
        prefix = f"rule {rule_id!r}: " if rule_id is not None else ""
        super().__init__(prefix + message, ruleset=ruleset, event_type=event_type)


class FactError(RulesError):
    """A fact's value has a type the rule layer does not accept (e.g. Decimal, datetime)."""

    def __init__(self, message: str, *, ruleset: str, event_type: str, fact: str) -> None:
        self.fact = fact
        super().__init__(f"fact {fact!r}: {message}", ruleset=ruleset, event_type=event_type)


class RuleEngineError(RulesError, RuntimeFailure):
    """durable-rules failed, or answered something inconsistent, while evaluating one message."""
