"""The tracker's assignment solver against SciPy's (the reference it replaces at run time)."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_assignment

from edge.core.assignment import linear_sum_assignment


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 7), (7, 4), (12, 12), (25, 30), (30, 25)])
@pytest.mark.parametrize("integers", [False, True])
def test_the_total_cost_is_scipys_minimum_on_random_matrices(shape, integers) -> None:
    rng = np.random.default_rng(sum(shape) + integers)
    for _ in range(40):
        # Small integer costs make many ties; a forbidden pair costs 1e6 as in the tracker.
        cost = rng.integers(0, 4, shape).astype(float) if integers else rng.random(shape)
        cost[rng.random(shape) < 0.3] = 1e6
        rows, cols = linear_sum_assignment(cost)
        want_rows, want_cols = scipy_assignment(cost)
        assert len(rows) == len(want_rows) == min(shape)
        assert np.all(np.diff(rows) > 0)
        assert len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(cost[want_rows, want_cols].sum())


def test_distinct_costs_give_scipys_assignment_and_empty_or_bad_input_is_handled() -> None:
    cost = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4]])
    assert [c.tolist() for c in linear_sum_assignment(cost)] == [[0, 1], [1, 0]]
    assert [c.tolist() for c in linear_sum_assignment(cost.T)] == [[0, 1], [1, 0]]
    rows, cols = linear_sum_assignment(np.zeros((0, 5)))
    assert len(rows) == len(cols) == 0
    with pytest.raises(ValueError):
        linear_sum_assignment(np.array([[np.inf, 1.0]]))
