"""Evaluations per second of a compiled RuleBook (rules/), against durable-rules on its own.

    .venv/bin/python bench/rules_speed.py [--seconds 2] [--rounds 5]

The book has 10 rules on one event type, shaped like the CHF pathway's (thresholds on weight
gains, a symptom list, diagnosis prefixes, a negation); the messages cycle through inputs that
match 0, 2, 3 and 9 of them. Prints the median evaluations/s over the rounds (wall clock, and
per CPU second of this process, which is steadier on a busy machine), and for comparison:
- the same ruleset and messages through durable-rules' own `Host.assert_fact` action dispatch
  (what the book avoids: ~17 us of Python per matching rule);
- bare `assert_fact` + `retract_fact` on a 10-rule ruleset with no match (no actions read).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from engine.definition.conditions import All, Any, Compare, Not, Op
from rules import RuleBook, RuleSpec
from rules.host import RULESET, RuleHost

EVENT = "observation.weight"
RULES = [
    RuleSpec("gain_24h", EVENT, Compare("weight_gain_24h_kg", Op.GE, 1.0)),
    RuleSpec("gain_7d", EVENT, Compare("weight_gain_7d_kg", Op.GE, 2.0)),
    RuleSpec("gain_24h_severe", EVENT, Compare("weight_gain_24h_kg", Op.GT, 2.5)),
    RuleSpec("low_weight", EVENT, Compare("weight_kg", Op.LT, 40)),
    RuleSpec("hf_diagnosis", EVENT, Compare("diagnoses", Op.INCLUDES_PREFIX, ("I50", "I11.0"))),
    RuleSpec("symptomatic", EVENT, Compare("symptom", Op.IN, ("dyspnea_at_rest", "syncope"))),
    RuleSpec("no_follow_up", EVENT, Not(Compare("follow_up_booked", Op.EQ, True))),
    RuleSpec(
        "gain_and_symptom",
        EVENT,
        All((Compare("weight_gain_24h_kg", Op.GE, 1.0), Compare("symptom", Op.NE, "none"))),
    ),
    RuleSpec(
        "either_gain",
        EVENT,
        Any((Compare("weight_gain_24h_kg", Op.GE, 1.5), Compare("weight_gain_7d_kg", Op.GE, 3))),
    ),
    RuleSpec("early", EVENT, Compare("days_since_enrolment", Op.LE, 7)),
]
MESSAGES = [
    {
        "weight_kg": 81.2,
        "weight_gain_24h_kg": 1.0,
        "weight_gain_7d_kg": 1.4,
        "diagnoses": ["I50.9", "E11.9"],
        "symptom": "none",
        "follow_up_booked": True,
        "days_since_enrolment": 3,
    },
    {
        "weight_kg": 80.0,
        "weight_gain_24h_kg": 0.2,
        "weight_gain_7d_kg": 0.5,
        "diagnoses": ["E11.9"],
        "symptom": "none",
        "follow_up_booked": True,
        "days_since_enrolment": 20,
    },
    {
        "weight_kg": 83.5,
        "weight_gain_24h_kg": 2.6,
        "weight_gain_7d_kg": 3.1,
        "diagnoses": ["I50.1"],
        "symptom": "dyspnea_at_rest",
        "follow_up_booked": False,
        "days_since_enrolment": 5,
    },
    {"weight_kg": 79.9, "weight_gain_7d_kg": 2.0, "symptom": "cough", "days_since_enrolment": 12},
]


def book_rate(book: RuleBook, seconds: float) -> tuple[float, float]:
    """(evaluations per wall-clock second, per CPU second)."""
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        for facts in MESSAGES * 250:
            book.evaluate(EVENT, facts)
        count += len(MESSAGES) * 250
    return count / elapsed, count / (time.process_time() - cpu)


def host_path_rate(book: RuleBook, seconds: float) -> float:
    """The book's ruleset and messages through durable-rules' own Host.assert_fact dispatch."""
    fired: list[str] = []

    class RecordingHost(RuleHost):
        def get_action(self, action_name: str) -> Callable[[object], None]:
            return lambda context: fired.append(action_name)

    host = RecordingHost(book.ruleset, book="host-path")
    encoder = book._program.encoders[EVENT]
    count, mid, start = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for facts in MESSAGES * 250:
            mid += 1
            message = json.loads(encoder.encode(facts, mid))
            for call in (host.assert_fact, host.retract_fact):
                try:
                    call(RULESET, message)
                except Exception as exc:  # MessageNotHandledException: no rule matched
                    if type(exc).__name__ != "MessageNotHandledException":
                        raise
            fired.clear()
        count += len(MESSAGES) * 250
    host.close()
    return count / elapsed


def bare_rate(seconds: float) -> float:
    """durable-rules alone: ten `x > i` rules, a message matching none (assert + retract)."""
    ruleset = {
        f"r{i}": {"all": [{"m": {"$and": [{"e": 1}, {"$gt": {"x": i}}]}}], "run": f"r{i}"}
        for i in range(10)
    }
    host = RuleHost(ruleset, book="bare")
    count, mid, start = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(1000):
            mid += 1
            host.match(f'{{"sid":"0","id":{mid},"e":1,"x":-1}}', "bare")
        count += 1000
    host.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    book = RuleBook(name="bench@1", rules=RULES)
    for facts in MESSAGES:
        print(
            f"  matches {len(book.evaluate(EVENT, facts))} of {len(RULES)}: {sorted(facts)[:3]}..."
        )
    measured = [book_rate(book, args.seconds) for _ in range(args.rounds)]
    rates = [wall for wall, _ in measured]
    cpu = [per_cpu for _, per_cpu in measured]
    host = [host_path_rate(book, args.seconds / 2) for _ in range(3)]
    bare = [bare_rate(args.seconds / 2) for _ in range(3)]
    print(f"durable-rules rules in the ruleset: {len(book.ruleset)}")
    print(
        f"RuleBook.evaluate: {statistics.median(rates):,.0f} evaluations/s "
        f"(median of {args.rounds}; min {min(rates):,.0f}, max {max(rates):,.0f}); "
        f"{statistics.median(cpu):,.0f} per CPU second"
    )
    print(f"same ruleset via durable-rules Host.assert_fact: {statistics.median(host):,.0f} /s")
    print(f"bare durable-rules assert+retract, no match: {statistics.median(bare):,.0f} /s")


if __name__ == "__main__":
    main()
