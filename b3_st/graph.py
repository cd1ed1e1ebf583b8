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


def directed_edges(indices: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten rank windows into directed ``(source, target, score)`` arrays, padding removed."""
    rows, window = indices.shape
    sources = np.repeat(np.arange(rows, dtype=np.int64), window)
    targets = indices.reshape(-1).astype(np.int64)
    weights = scores.reshape(-1)
    present = targets >= 0
    return sources[present], targets[present], weights[present]


def build_window_graph(indices: np.ndarray, scores: np.ndarray, edges: EdgePolicy = "mutual") -> WindowGraph:
    """Turn rank windows into an undirected graph.

    ``"mutual"`` keeps a pair only when each row is in the other's window; ``"all"`` keeps a pair
    when either is. Memory is linear in ``rows * window_size``: the graph is an edge list.
    """
    rows = len(indices)
    sources, targets, weights = directed_edges(indices, scores)

    # Encode each directed edge as one integer and the unordered pair as another.
    low = np.minimum(sources, targets)
    high = np.maximum(sources, targets)
    pair_keys = low * rows + high
    order = np.argsort(pair_keys, kind="stable")
    pair_keys = pair_keys[order]
    weights = weights[order]

    unique_keys, first, counts = np.unique(pair_keys, return_index=True, return_counts=True)
    summed = np.add.reduceat(weights, first) if len(weights) else weights
    mean_weights = (summed / counts).astype(np.float32)

    # Both directions of a pair give two equal keys, one direction gives one.
    keep = counts >= 2 if edges == "mutual" else np.ones(len(unique_keys), dtype=bool)
    unique_keys = unique_keys[keep]

    graph = WindowGraph(
        rows=rows,
        sources=unique_keys // rows,
        targets=unique_keys % rows,
        weights=mean_weights[keep],
    )
    logger.info("Window graph (%s edges): %d rows, %d edges, %d isolated rows",
                edges, rows, graph.edge_count, int((graph.degrees() == 0).sum()))
    return graph
