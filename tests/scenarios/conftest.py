from __future__ import annotations

import pytest

from tests.scenarios.harness import EVALUATORS


@pytest.fixture(params=sorted(EVALUATORS))
def evaluator(request: pytest.FixtureRequest) -> str:
    """Each rule case with the durable-rules rule book and with the reference evaluator."""
    return str(request.param)
