"""The durable-rules host of one rule book: one ruleset, one session, no threads, no clock.

What durable-rules does, and what this wrapper does about it (durable-rules 2.0.28, read in
durable/engine.py and the C sources; measured on this machine):

- `Host.__init__` starts two `threading.Timer` loops (`_run`: action dispatch and timers, every
  0.1-0.5 s, for ever). `_run` is overridden to do nothing: no thread ever runs.
- Events (`post`) are consumed by the first rule that fires; facts (`assert_fact`) are offered
  to every rule. Every message here is a fact, retracted again once its matches are read, so
  the one session (sid "0") holds nothing between evaluations: memory does not grow with the
  number of evaluations or patients. (Retracting is cheaper than `delete_state` per message,
  and `delete_state` segfaults on a session whose messages never matched; see `close`.)
- `Host.assert_fact` runs each action through `Closure`/`Promise`, which read the wall clock
  (an action "completes" silently after 10 s, dropping the remaining matches), copy the state
  to JSON per action and cost ~17 us per matching rule; exceptions in actions are caught and
  written to the state's `exception` field. The matches are instead read straight from the
  engine (`start_action_for_state` / `complete_and_start_action`, what `Ruleset.do_actions`
  calls): ~60,000 messages/s instead of ~11,000 with 10 rules `x > i` of which 4 match. The
  registered actions only refuse to run; if durable-rules ever ran one itself, the exception it
  swallowed would show in the state's `exception` field, which is checked.
- `delete_ruleset` frees the network but not the session's pools (~240 KB); `delete_state`
  frees those but segfaults on a session that never had a message handled, so each host first
  posts one priming message that matches a rule of its own, and `close` deletes both.
- A message that matches nothing returns "not handled" (`MessageNotHandledException` in the
  Python API), which here just means "no rule matched". Every message gets a fresh id: a
  repeated one would be "already observed".
- The engine's action lease reads the clock (30 s), but only while an action is started and not
  completed; every started action is completed before `match` returns.

After any failure the host is marked broken; its owner replaces it with a fresh one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any as AnyType

import durable_rules_engine as engine  # type: ignore[import-not-found]  # C extension
from durable.engine import Host

from rules.errors import RuleCompileError, RuleEngineError

RULESET = "book"
SID = "0"
#: A rule matched once by a priming message when the host starts: durable-rules segfaults in
#: `delete_state` on a session that never had a message handled, and `close` deletes the session.
PRIME = "prime"
_PRIME_RULE = {"all": [{"m": {"e": -1}}], "run": PRIME}
_PRIME_MESSAGE = f'{{"sid":"{SID}","id":0,"e":-1}}'
_HANDLED, _NOT_HANDLED = 0, 1


class RuleHost(Host):  # type: ignore[misc]  # durable-rules is untyped
    """Registers one ruleset from plain dicts and evaluates one message at a time."""

    def __init__(self, ruleset: Mapping[str, object], *, book: str) -> None:
        self.book = book
        self.broken = False
        super().__init__()  # calls self._run(), a no-op here
        # durable-rules deletes the "run" entries from the dicts it is given
        definition = copy.deepcopy({**ruleset, PRIME: _PRIME_RULE})
        try:
            self.set_rulesets({RULESET: definition})
        except engine.error as exc:  # e.g. "Could not create ruleset, error code: 113"
            raise RuleCompileError(
                f"durable-rules refused the ruleset: {exc}", ruleset=book
            ) from exc
        self._handle: int = self.get_ruleset(RULESET)._handle
        self._closed = False
        if self.match(_PRIME_MESSAGE, "(start)") != [PRIME]:
            raise RuleEngineError("durable-rules did not answer the priming message", ruleset=book)

    def _run(self) -> None:
        """Host would start its dispatch and timer threads here; this host has none."""

    def get_action(self, action_name: str) -> Callable[[AnyType], None]:
        def refuse(context: AnyType) -> None:
            raise RuntimeError(f"durable-rules ran action {action_name} itself")

        return refuse

    def match(self, message: str, event_type: str) -> list[str]:
        """Names of the rules (with repeats) that fire for `message`, a JSON fact."""
        if self.broken or self._closed:
            raise RuleEngineError("host is not usable", ruleset=self.book, event_type=event_type)
        handle = self._handle
        suffix = f'":{{"m":{message}}}}}'
        names: list[str] = []
        started = False
        try:
            code, state = engine.assert_fact(handle, message)
            if code == _HANDLED:
                first = engine.start_action_for_state(handle, state)
                if first is not None:
                    started = True
                    state_json, result = first
                    _check_state(state_json)
                    while result is not None:
                        if not (result.startswith('{"') and result.endswith(suffix)):
                            raise ValueError(f"a match for another message: {result[:200]}")
                        names.append(result[2 : len(result) - len(suffix)])
                        result = engine.complete_and_start_action(handle, state)
                    started = False
            elif code != _NOT_HANDLED:
                raise ValueError(f"assert_fact answered {code} (2: already observed)")
            retracted, _ = engine.retract_fact(handle, message)
            if retracted not in (_HANDLED, _NOT_HANDLED):
                raise ValueError(f"retract_fact answered {retracted}")
        except Exception as exc:
            self.broken = True
            if started:
                engine.abandon_action(handle, state)
            raise RuleEngineError(
                f"durable-rules failed: {exc}", ruleset=self.book, event_type=event_type
            ) from exc
        return names

    def close(self) -> None:
        """Free the engine's session and ruleset (delete_ruleset alone leaks the session)."""
        if not self._closed:
            self._closed = True
            engine.delete_state(self._handle, SID)
            engine.delete_ruleset(self._handle)


def _check_state(state_json: str) -> None:
    if '"exception"' in state_json:
        state = json.loads(state_json)
        if "exception" in state:
            raise ValueError(f"an action failed inside durable-rules: {state['exception']}")
