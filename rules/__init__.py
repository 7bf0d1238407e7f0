"""The rule layer: the only code that touches durable-rules.

A `RuleBook` compiles a pathway version's conditions (engine.definition.conditions) into one
durable-rules ruleset built from data and answers, per message, which rules hold.
"""

from rules.book import RuleBook, RuleSpec
from rules.errors import FactError, RuleCompileError, RuleEngineError, RulesError

__all__ = [
    "FactError",
    "RuleBook",
    "RuleCompileError",
    "RuleEngineError",
    "RuleSpec",
    "RulesError",
]
