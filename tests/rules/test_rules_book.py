"""RuleBook behaviour around durable-rules' hazards: order, errors, threads, memory, limits."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import durable_rules_engine as engine  # type: ignore[import-not-found]
import pytest

import rules
from engine.definition.conditions import All, Any, Compare, Condition, Not, Op, evaluate
from engine.errors import CarepathError, RuntimeFailure
from rules import FactError, RuleBook, RuleCompileError, RuleEngineError, RuleSpec
from rules.host import RULESET, SID

ROOT = Path(__file__).resolve().parents[2]
W = "observation.weight"
GAIN = Compare("weight_gain_24h_kg", Op.GE, 1.0)


def reference(book: RuleBook, event_type: str, facts: Mapping[str, object]) -> tuple[str, ...]:
    return tuple(
        s.id for s in book.rules if s.event_type == event_type and evaluate(s.condition, facts)
    )


def test_public_api_is_pinned() -> None:
    assert rules.__all__ == [
        "FactError",
        "RuleBook",
        "RuleCompileError",
        "RuleEngineError",
        "RuleSpec",
        "RulesError",
    ]
    assert issubclass(RuleEngineError, rules.RulesError)
    assert issubclass(RuleEngineError, RuntimeFailure)
    assert issubclass(rules.RulesError, CarepathError)


def test_ids_come_back_in_declaration_order() -> None:
    split = Any((Compare("symptom", Op.EQ, "syncope"), GAIN))  # becomes two durable-rules rules
    book = RuleBook(
        name="order",
        rules=[
            RuleSpec("zeta", W, Compare("weight_kg", Op.GT, 80)),
            RuleSpec("alpha", W, split),
            RuleSpec("mid", W, GAIN),
            RuleSpec("same_as_mid", W, GAIN),  # identical conditions share a rule
            RuleSpec("never", W, Any(())),
            RuleSpec("always", W, All(())),
        ],
    )
    facts = {"weight_kg": 81.0, "weight_gain_24h_kg": 1.0, "symptom": "syncope"}
    assert book.evaluate(W, facts) == ("zeta", "alpha", "mid", "same_as_mid", "always")
    assert book.evaluate(W, {"symptom": "syncope"}) == ("alpha", "always")
    assert book.evaluate(W, {}) == ("always",)


def test_every_matching_rule_is_reported_not_only_the_first() -> None:
    specs = [RuleSpec(f"gain_over_{i}", W, Compare("gain", Op.GT, i)) for i in range(10)]
    book = RuleBook(name="all", rules=specs)
    assert book.evaluate(W, {"gain": 4.5}) == tuple(f"gain_over_{i}" for i in range(5))
    assert book.evaluate(W, {"gain": 100}) == tuple(s.id for s in specs)
    assert book.evaluate(W, {"gain": -1}) == ()


def test_rules_of_other_event_types_never_match() -> None:
    book = RuleBook(
        name="types",
        rules=[
            RuleSpec("weight", W, All(())),
            RuleSpec("symptom", "symptom.reported", All(())),
            RuleSpec("weight_gain", W, GAIN),
        ],
    )
    assert book.evaluate(W, {"weight_gain_24h_kg": 2}) == ("weight", "weight_gain")
    assert book.evaluate("symptom.reported", {"weight_gain_24h_kg": 2}) == ("symptom",)
    assert book.evaluate("unknown.type", {"weight_gain_24h_kg": 2}) == ()


# durable-rules' own dispatch reads the clock with datetime.utcfromtimestamp (deprecated in 3.12)
@pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning")
def test_an_exception_durable_rules_swallows_in_an_action_surfaces() -> None:
    book = RuleBook(name="swallowed", rules=[RuleSpec("gain", W, GAIN)])
    # durable-rules' own dispatch (Host.assert_fact) runs the registered action, which refuses;
    # durable-rules catches that and only writes it into the session's "exception" field
    state = book._host.assert_fact(RULESET, {"sid": SID, "id": "x1", "e": 0, "t0": "n", "q0": 5})
    assert "exception" in state
    with pytest.raises(RuleEngineError, match="action failed inside durable-rules") as caught:
        book.evaluate(W, {"weight_gain_24h_kg": 2})
    assert caught.value.ruleset == "swallowed"
    assert caught.value.event_type == W
    # the broken session is replaced: the next evaluation is right again
    assert book.evaluate(W, {"weight_gain_24h_kg": 2}) == ("gain",)
    assert book.evaluate(W, {"weight_gain_24h_kg": 0}) == ()


def test_a_match_for_another_message_is_an_error() -> None:
    book = RuleBook(name="stale", rules=[RuleSpec("gain", W, GAIN)])
    # a fact whose action nobody read: the next evaluation would be handed its match first
    handle = book._host._handle
    engine.assert_fact(handle, json.dumps({"sid": SID, "id": 999, "e": 0, "t0": "n", "q0": 5}))
    with pytest.raises(RuleEngineError, match="a match for another message"):
        book.evaluate(W, {"weight_gain_24h_kg": 2})
    assert book.evaluate(W, {"weight_gain_24h_kg": 2}) == ("gain",)


def test_an_engine_error_is_a_rule_engine_error() -> None:
    book = RuleBook(name="engine", rules=[RuleSpec("gain", W, GAIN)])
    with pytest.raises(RuleEngineError, match="durable-rules failed"):
        book._host.match('{"sid":"0","id":5,"e":0,"t0":"n","q0":1e5}', W)  # unreadable number
    assert book.evaluate(W, {"weight_gain_24h_kg": 1e-5}) == ()


def test_no_background_threads() -> None:
    before = threading.active_count()
    book = RuleBook(name="threads", rules=[RuleSpec("gain", W, GAIN)])
    for gain in (0, 1, 2):
        book.evaluate(W, {"weight_gain_24h_kg": gain})
    assert threading.active_count() == before
    assert not [t for t in threading.enumerate() if isinstance(t, threading.Timer)]


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_does_not_grow_with_evaluations_or_books() -> None:
    book = RuleBook(name="memory", rules=[RuleSpec("gain", W, GAIN)])
    for i in range(2000):  # warm up allocators
        book.evaluate(W, {"weight_gain_24h_kg": i % 3, "patient": i})
    start = _rss()
    for i in range(20000):
        book.evaluate(W, {"weight_gain_24h_kg": i % 3, "patient": i})
    assert _rss() - start < 2 * 2**20
    assert engine.get_facts(book._host._handle, SID) == "[]"  # nothing resident between calls
    start = _rss()
    for _ in range(100):  # each book's session and network are freed when it goes
        other = RuleBook(name="churn", rules=[RuleSpec("gain", W, GAIN)])
        other.evaluate(W, {"weight_gain_24h_kg": 2})
        del other
    assert _rss() - start < 4 * 2**20


def test_closed_book_refuses() -> None:
    book = RuleBook(name="closed", rules=[RuleSpec("gain", W, GAIN)])
    book.close()
    book.close()
    with pytest.raises(RuleEngineError, match="not usable"):
        book.evaluate(W, {"weight_gain_24h_kg": 2})


SCRIPT = """
import json, sys
from engine.definition.conditions import *
from rules import RuleBook, RuleSpec
conds = [Compare("g", Op.GE, 1.0), Not(Compare("s", Op.IN, ("a", "b"))),
         Any((Compare("d", Op.INCLUDES_PREFIX, ("I50",)), Compare("g", Op.LT, -1)))]
book = RuleBook(name="det", rules=[RuleSpec(f"r{i}", "w", c) for i, c in enumerate(conds)])
inputs = json.loads(sys.argv[1])
print(json.dumps([book.evaluate("w", f) for f in inputs]))
"""
INPUTS: list[dict[str, object]] = [
    {},
    {"g": 1},
    {"g": 0.5, "s": "a"},
    {"d": ["I50.9"], "g": -2, "s": "c"},
    {"s": 5},
]


def test_same_answers_in_fresh_processes() -> None:
    runs = [
        subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(INPUTS)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    conds: list[Condition] = [
        Compare("g", Op.GE, 1.0),
        Not(Compare("s", Op.IN, ("a", "b"))),
        Any((Compare("d", Op.INCLUDES_PREFIX, ("I50",)), Compare("g", Op.LT, -1))),
    ]
    want = [[f"r{i}" for i, c in enumerate(conds) if evaluate(c, facts)] for facts in INPUTS]
    assert json.loads(runs[0]) == want


def test_evaluations_from_several_threads() -> None:
    book = RuleBook(
        name="threads",
        rules=[RuleSpec(f"over_{i}", W, Compare("gain", Op.GT, i)) for i in range(5)],
    )
    failures: list[str] = []

    def worker(offset: int) -> None:
        for i in range(300):
            facts = {"gain": (i + offset) % 7}
            if book.evaluate(W, facts) != reference(book, W, facts):
                failures.append(repr(facts))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# -- what durable-rules cannot take is refused when the book is built ------------------------


def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(RuleCompileError, match="declared twice") as caught:
        RuleBook(name="dup", rules=[RuleSpec("a", W, GAIN), RuleSpec("a", W, GAIN)])
    assert caught.value.rule_id == "a"


@pytest.mark.parametrize("threshold", [math.inf, math.nan, 2**60, 1e300])
def test_thresholds_durable_rules_cannot_compare_exactly_are_refused(threshold: float) -> None:
    with pytest.raises(RuleCompileError, match="not a number durable-rules compares") as caught:
        RuleBook(
            name="bad",
            rules=[RuleSpec("ok", W, GAIN), RuleSpec("huge", W, Compare("g", Op.LT, threshold))],
        )
    assert caught.value.rule_id == "huge"
    assert caught.value.event_type == W


def test_too_many_facts_for_one_message_is_refused() -> None:
    condition = All(tuple(Compare(f"f{i}", Op.EQ, "x") for i in range(150)))
    with pytest.raises(RuleCompileError, match="properties"):
        RuleBook(name="wide", rules=[RuleSpec("wide", W, condition)])


def test_unsupported_fact_types_are_fact_errors() -> None:
    book = RuleBook(
        name="types",
        rules=[RuleSpec("gain", W, GAIN), RuleSpec("dx", W, Compare("dx", Op.INCLUDES, ("I50",)))],
    )
    with pytest.raises(FactError, match="Decimal") as caught:
        book.evaluate(W, {"weight_gain_24h_kg": Decimal("1.5")})
    assert caught.value.fact == "weight_gain_24h_kg"
    with pytest.raises(FactError, match="item type"):
        book.evaluate(W, {"dx": ["I50", Decimal(1)]})
    assert book.evaluate(W, {"weight_gain_24h_kg": 1.5, "unused": Decimal(1)}) == ("gain",)


# -- books larger than durable-rules' fixed limits are reshaped, not broken ------------------


def test_many_rules_matching_at_once() -> None:
    # more than 64 rules matching one message overflows durable-rules' stack (error 303)
    # unless they are put in buckets
    specs = [RuleSpec(f"over_{i}", W, Compare("gain", Op.GT, i)) for i in range(150)]
    book = RuleBook(name="many", rules=specs)
    assert any("$neq" in json.dumps(rule) for rule in book.ruleset.values())
    assert book.evaluate(W, {"gain": 1000}) == tuple(s.id for s in specs)
    assert book.evaluate(W, {"gain": 10.5}) == tuple(f"over_{i}" for i in range(11))


def test_many_tests_below_one_node() -> None:
    # durable-rules keeps a node's tests in a 512-entry hash set and loops for ever once it is
    # full (600 rules `code == ...` would hang): such books are put in buckets too
    specs = [RuleSpec(f"code_{i}", W, Compare("code", Op.EQ, f"C{i}")) for i in range(600)]
    book = RuleBook(name="codes", rules=specs)
    assert book.evaluate(W, {"code": "C599"}) == ("code_599",)
    assert book.evaluate(W, {"code": "C600"}) == ()


def test_more_event_types_than_durable_rules_can_index_is_refused() -> None:
    specs = [RuleSpec(f"r{i}", f"type.{i}", GAIN) for i in range(501)]
    with pytest.raises(RuleCompileError, match="501 event types"):
        RuleBook(name="types", rules=specs)


def test_a_condition_wider_than_one_durable_rule() -> None:
    # more than 15 and/or nodes do not fit in one durable-rules rule (error 113)
    wide: Condition = All(
        tuple(Any((Compare(f"a{i}", Op.GE, 1), Compare(f"b{i}", Op.EQ, "x"))) for i in range(16))
    )
    fanned: Condition = All((GAIN, Any(tuple(Compare(f"c{i}", Op.EQ, i) for i in range(40)))))
    deep: Condition = Not(
        All(
            tuple(
                Not(Any((Compare(f"a{i}", Op.LT, 0), Not(Compare(f"b{i}", Op.NE, "y")))))
                for i in range(6)
            )
        )
    )
    book = RuleBook(
        name="wide",
        rules=[RuleSpec("wide", W, wide), RuleSpec("fanned", W, fanned), RuleSpec("deep", W, deep)],
    )
    samples: list[dict[str, object]] = [
        {},
        {f"a{i}": 1 for i in range(16)},
        {**{f"a{i}": 1 for i in range(15)}, "b15": "x"},
        {**{f"a{i}": 1 for i in range(15)}, "b15": "y"},
        {"weight_gain_24h_kg": 2, "c39": 39},
        {"weight_gain_24h_kg": 2, "c39": 38, **{f"b{i}": "y" for i in range(6)}},
        {**{f"a{i}": -1 for i in range(6)}},
    ]
    assert len(book.ruleset) > 3  # split into several durable-rules rules
    for facts in samples:
        assert book.evaluate(W, facts) == reference(book, W, facts), facts


def test_strings_python_cannot_encode_compare_as_unequal() -> None:
    book = RuleBook(
        name="surrogates",
        rules=[
            RuleSpec("eq", W, Compare("s", Op.EQ, "a")),
            RuleSpec("ne", W, Compare("s", Op.NE, "a")),
            RuleSpec("prefix", W, Compare("s", Op.PREFIX, ("ab",))),
            RuleSpec("listed", W, Compare("l", Op.INCLUDES_PREFIX, ("ab",))),
        ],
    )
    for facts in ({"s": "ab\ud800"}, {"s": "\ud800"}, {"l": ["ab\udfff", "\ud800"]}):
        assert book.evaluate(W, facts) == reference(book, W, facts)


def test_only_rules_imports_durable_rules() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("engine", "adapters", "bench")
        for path in (ROOT / package).rglob("*.py")
        if any(
            line.split("#")[0].strip().startswith(("import durable", "from durable"))
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert offenders == []
