"""Community detection on the window graph, behind a small backend interface."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from b3_st.graph import WindowGraph

logger = logging.getLogger(__name__)


class CommunityBackend(Protocol):
    """Splits a graph into communities of at most ``max_size`` rows.

    ``partition`` returns one community id per row. Ids need not be contiguous, and communities
    may be smaller than ``max_size``; :func:`b3_st.clusters.build_clusters` handles the rest.
    """

    name: str

    def partition(self, graph: WindowGraph, max_size: int, seed: int, iterations: int) -> np.ndarray: ...


class LeidenBackend:
    """Leiden on igraph through ``leidenalg``, optimising weighted modularity.

    ``leidenalg.find_partition(..., max_comm_size=K)`` (leidenalg 0.12) does not keep communities
    under ``K`` on its own, so this runs an ``Optimiser`` with ``max_comm_size`` and
    ``community_constraint_enforcement=1``, which does.
    """

    name = "leiden"

    def partition(self, graph: WindowGraph, max_size: int, seed: int, iterations: int = 2) -> np.ndarray:
        import igraph as ig
        import leidenalg

        if graph.edge_count == 0:
            return np.arange(graph.rows, dtype=np.int64)

        igraph_graph = ig.Graph(n=graph.rows, edges=np.column_stack([graph.sources, graph.targets]))
        partition = leidenalg.ModularityVertexPartition(igraph_graph, weights=graph.weights.astype(np.float64).tolist())

        optimiser = leidenalg.Optimiser()
        optimiser.max_comm_size = max_size
        optimiser.community_constraint_enforcement = 1
        optimiser.set_rng_seed(seed)
        optimiser.optimise_partition(partition, n_iterations=iterations)
        return np.asarray(partition.membership, dtype=np.int64)


class MetisBackend:
    """METIS balanced partitioning through ``pymetis`` (the B3 paper's choice).

    METIS splits the graph into ``ceil(rows / K)`` parts of about equal size, so isolated rows are
    spread over parts rather than left alone. Parts larger than ``K`` are split later.
    """

    name = "metis"

    def partition(self, graph: WindowGraph, max_size: int, seed: int, iterations: int = 2) -> np.ndarray:
        try:
            import pymetis
        except ImportError as error:
            raise ImportError(
                "community_backend='metis' needs pymetis: pip install 'b3_st[metis]'."
            ) from error

        parts = max(1, -(-graph.rows // max_size))
        if parts == 1:
            return np.zeros(graph.rows, dtype=np.int64)

        both_sources = np.concatenate([graph.sources, graph.targets])
        both_targets = np.concatenate([graph.targets, graph.sources])
        order = np.argsort(both_sources, kind="stable")
        adjacency = both_targets[order]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(both_sources, minlength=graph.rows))])

        options = pymetis.Options(seed=seed)
        if hasattr(pymetis, "CSRAdjacency"):
            result = pymetis.part_graph(parts, pymetis.CSRAdjacency(offsets, adjacency), options=options)
        else:
            result = pymetis.part_graph(parts, xadj=offsets, adjncy=adjacency, options=options)
        return np.asarray(result.vertex_part if hasattr(result, "vertex_part") else result[1], dtype=np.int64)


_BACKENDS: dict[str, type] = {"leiden": LeidenBackend, "metis": MetisBackend}


def register_backend(name: str, backend: type) -> None:
    """Make ``backend`` (a class with a ``partition`` method) available as ``community_backend=name``."""
    _BACKENDS[name] = backend


def get_backend(name: str) -> CommunityBackend:
    if name not in _BACKENDS:
        raise ValueError(f"community_backend={name!r} is unknown: use one of {sorted(_BACKENDS)}.")
    return _BACKENDS[name]()
