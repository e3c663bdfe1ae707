"""The reliability suite's tally (``tests/reliability/tally.py``): each test records what it tried
and what held, and the run ends with one summary line per category (faults, hostile inputs, load,
determinism, results lost)."""

from __future__ import annotations

import pytest

from tests.reliability.tally import Recorder


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(request.node)
