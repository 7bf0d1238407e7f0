"""The reference pathways compiled for the decision core, with each evaluator."""

from __future__ import annotations

import pytest

from engine.core import CompiledPathway, compile_pathway
from tests.scenarios.harness import EVALUATORS, load_pathways


@pytest.fixture(params=sorted(EVALUATORS))
def evaluator(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def compiled(pathway_id: str, evaluator: str) -> CompiledPathway:
    pathway = next(p for p in load_pathways() if p.id == pathway_id)
    return compile_pathway(pathway, EVALUATORS[evaluator])


@pytest.fixture
def chf(evaluator: str) -> CompiledPathway:
    return compiled("chf-post-discharge", evaluator)


@pytest.fixture
def foot(evaluator: str) -> CompiledPathway:
    return compiled("diabetic-foot-care", evaluator)
