"""A minimal valid pathway as YAML text, for tests that change one thing in it.

    pathway()                                  the minimal pathway: one trigger, nothing else
    pathway(rules='''rules: ...''')            the same with a `rules:` section added
    pathway(enrolment='''enrolment: ...''')    the same with its enrolment replaced

Sections are given as YAML text (dedented here), so a test shows exactly what the author wrote,
and are joined in the usual order: head, parameters, enrolment, rules, deadlines, escalations,
exit, execution. `position(text, marker)` finds where a problem should point: the line and
column of the one place `marker` is written.
"""

from __future__ import annotations

import textwrap

HEAD = """\
id: test-pathway
version: 1
title: Test pathway
description: A small pathway for tests.
owner: Test lead
"""

ENROLMENT = """\
enrolment:
  one_active_per_patient: true
  triggers:
    - id: discharged
      when:
        event: encounter.discharged
      then:
        - action: outreach_call
          role: care_coordinator
"""

SECTIONS = (
    "head",
    "parameters",
    "enrolment",
    "rules",
    "deadlines",
    "escalations",
    "exit",
    "execution",
)


def pathway(**sections: str) -> str:
    """The minimal valid pathway with the given sections added or replaced."""
    unknown = sections.keys() - set(SECTIONS)
    if unknown:
        raise TypeError(f"no such section: {', '.join(sorted(unknown))}")
    parts = {"head": HEAD, "enrolment": ENROLMENT}
    for name, text in sections.items():
        body = textwrap.dedent(text).strip("\n")
        parts[name] = f"{body}\n" if body else ""
    return "".join(parts.get(name, "") for name in SECTIONS)


def position(text: str, marker: str) -> tuple[int, int]:
    """(line, column), 1-based, of `marker`, which must be written exactly once in `text`."""
    count = text.count(marker)
    if count != 1:
        raise AssertionError(f"{marker!r} is written {count} times in the pathway, not once")
    before = text[: text.index(marker)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
