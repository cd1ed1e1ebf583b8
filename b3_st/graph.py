"""The window graph: an edge joins two rows when one is in the other's rank window."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from b3_st.config import EdgePolicy

logger = logging.getLogger(__name__)


@dataclass
class WindowGraph:
    """Undirected weighted graph over the rows, stored as an edge list with ``sources < targets``.

    Attributes:
        rows: Number of nodes (dataset rows).
        sources: int64 first endpoint of each edge.
        targets: int64 second endpoint of each edge.
        weights: float32 teacher similarity of each edge, averaged over its two directions when
            both exist.
    """

    rows: int
    sources: np.ndarray
    targets: np.ndarray
    weights: np.ndarray

    @property
    def edge_count(self) -> int:
        return len(self.sources)

    def degrees(self) -> np.ndarray:
        return np.bincount(self.sources, minlength=self.rows) + np.bincount(self.targets, minlength=self.rows)


# Rows of rank windows turned into pair keys at a time, so that int64 temporaries stay small.
GRAPH_CHUNK_ROWS = 65536


def directed_edges(indices: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten rank windows into directed ``(source, target, score)`` arrays, padding removed.

    Sources and targets are int32 like the windows, which halves their memory against int64: at
    1M rows and a window of 100 the three arrays take 1.2 GB.
    """
    rows, window = indices.shape
    present = indices.reshape(-1) >= 0
    sources = np.repeat(np.arange(rows, dtype=np.int32), window)[present]
    targets = indices.reshape(-1)[present].astype(np.int32, copy=False)
    weights = scores.reshape(-1)[present]
    return sources, targets, weights


def _sorted_pair_keys(indices: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``low * rows + high`` for every directed window edge, sorted, with its score."""
    rows = len(indices)
    keys = np.empty(int((indices >= 0).sum()), dtype=np.int64)
    weights = np.empty(len(keys), dtype=np.float32)
    filled = 0
    for start in range(0, rows, GRAPH_CHUNK_ROWS):
        block = indices[start : start + GRAPH_CHUNK_ROWS]
        present = block >= 0
        sources = np.broadcast_to(np.arange(start, start + len(block), dtype=np.int64)[:, None], block.shape)[present]
        targets = block[present].astype(np.int64)
        stop = filled + len(targets)
        keys[filled:stop] = np.minimum(sources, targets) * rows + np.maximum(sources, targets)
        weights[filled:stop] = scores[start : start + GRAPH_CHUNK_ROWS][present]
        filled = stop

    order = np.argsort(keys)
    keys = keys[order]
    weights = weights[order]
    return keys, weights


def build_window_graph(indices: np.ndarray, scores: np.ndarray, edges: EdgePolicy = "mutual") -> WindowGraph:
    """Turn rank windows into an undirected graph.

    ``"mutual"`` keeps a pair only when each row is in the other's window; ``"all"`` keeps a pair
    when either is. Memory is linear in ``rows * window_size``: every directed edge becomes one
    int64 key of its unordered pair, and one sort brings the two directions of a pair together.
    """
    rows = len(indices)
    keys, weights = _sorted_pair_keys(indices, scores)

    if len(keys) == 0:
        return WindowGraph(rows=rows, sources=np.zeros(0, dtype=np.int64), targets=np.zeros(0, dtype=np.int64),
                           weights=np.zeros(0, dtype=np.float32))

    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    counts = np.diff(np.append(starts, len(keys)))
    summed = np.add.reduceat(weights, starts)
    pair_keys = keys[starts]
    del keys, weights

    # Both directions of a pair give two equal keys, one direction gives one.
    keep = counts >= 2 if edges == "mutual" else np.ones(len(pair_keys), dtype=bool)
    pair_keys = pair_keys[keep]

    graph = WindowGraph(
        rows=rows,
        sources=pair_keys // rows,
        targets=pair_keys % rows,
        weights=(summed[keep] / counts[keep]).astype(np.float32),
    )
    logger.info("Window graph (%s edges): %d rows, %d edges, %d isolated rows",
                edges, rows, graph.edge_count, int((graph.degrees() == 0).sum()))
    return graph
