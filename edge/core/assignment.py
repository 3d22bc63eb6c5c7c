"""Minimum-cost assignment of rows to columns (pure numpy).

`linear_sum_assignment(cost)` returns what `scipy.optimize.linear_sum_assignment` returns: the
row indices (increasing) and their columns of a minimum-cost matching that covers every row of a
wide matrix (every column of a tall one).

Why this is written here and not imported from SciPy: importing `scipy.optimize` for this one
function loads most of SciPy (sparse, linalg, ...) and costs ~50 MB of resident memory and
~0.8 s at start (measured: benchmarks/results/memory.md), which on a 4-camera device is a fifth
of its memory budget and on a Raspberry Pi a large share of its RAM. The tracker solves small
matrices (tracks x detections, tens at most), where a shortest-augmenting-path solver vectorised
over columns is fast enough. The algorithm is the one SciPy uses (Jonker-Volgenant style
shortest augmenting paths with dual variables, as described by Crouse, "On implementing 2D
rectangular assignment algorithms", IEEE TAES 2016): one augmentation per row, each a Dijkstra
search over reduced costs.
"""

from typing import Tuple

import numpy as np


def linear_sum_assignment(cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a minimum-cost assignment of the 2-D `cost` matrix; rows increasing.
    ValueError for non-finite costs (the tracker marks forbidden pairs with a large finite cost)."""
    matrix = np.asarray(cost, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError("cost must be a 2-D matrix")
    if matrix.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.all(np.isfinite(matrix)):
        raise ValueError("cost must be finite")
    transposed = matrix.shape[0] > matrix.shape[1]
    col_of_row = _assign_rows(matrix.T if transposed else matrix)
    rows = np.arange(len(col_of_row), dtype=np.int64)
    if not transposed:
        return rows, col_of_row
    order = np.argsort(col_of_row)
    return col_of_row[order], rows[order]


def _assign_rows(cost: np.ndarray) -> np.ndarray:
    """Column of each row for a matrix with no more rows than columns."""
    n_rows, n_cols = cost.shape
    u = np.zeros(n_rows)  # row duals
    v = np.zeros(n_cols)  # column duals
    col_of_row = np.full(n_rows, -1, np.int64)
    row_of_col = np.full(n_cols, -1, np.int64)
    for start in range(n_rows):
        shortest = np.full(n_cols, np.inf)  # reduced path cost to each column
        via_row = np.full(n_cols, -1, np.int64)  # the row the shortest path reaches it from
        done_cols = np.zeros(n_cols, bool)
        visited_rows = [start]
        row, path_cost, sink = start, 0.0, -1
        while sink < 0:
            reduced = path_cost + cost[row] - u[row] - v
            better = ~done_cols & (reduced < shortest)
            shortest[better] = reduced[better]
            via_row[better] = row
            candidates = np.where(done_cols, np.inf, shortest)
            lowest = candidates.min()
            tied = np.flatnonzero(candidates == lowest)
            free = tied[row_of_col[tied] < 0]
            col = int(free[0] if len(free) else tied[0])  # prefer a free column: ends the search
            path_cost = float(lowest)
            done_cols[col] = True
            if row_of_col[col] < 0:
                sink = col
            else:
                row = int(row_of_col[col])
                visited_rows.append(row)
        # Dual update keeps every reduced cost non-negative and the matched ones at zero.
        u[start] += path_cost
        for other in visited_rows[1:]:
            u[other] += path_cost - shortest[col_of_row[other]]
        v[done_cols] -= path_cost - shortest[done_cols]
        # Augment along the path back to the starting row.
        col = sink
        while True:
            row = int(via_row[col])
            row_of_col[col] = row
            col_of_row[row], col = col, int(col_of_row[row])
            if row == start:
                break
    return col_of_row
