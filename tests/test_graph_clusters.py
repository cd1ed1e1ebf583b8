import numpy as np
import pytest

from b3_st.clusters import build_clusters
from b3_st.communities import get_backend
from b3_st.graph import build_window_graph, directed_edges
from b3_st.ranking import compute_rank_windows


def test_mutual_graph_keeps_only_two_way_edges():
    indices = np.array([[1, 2], [0, -1], [3, -1], [2, 0]], dtype=np.int32)
    scores = np.array([[0.9, 0.8], [0.7, -np.inf], [0.6, -np.inf], [0.5, 0.4]], dtype=np.float32)

    graph = build_window_graph(indices, scores, "mutual")
    pairs = set(zip(graph.sources.tolist(), graph.targets.tolist()))
    assert pairs == {(0, 1), (2, 3)}
    weight_01 = graph.weights[list(zip(graph.sources, graph.targets)).index((0, 1))]
    assert weight_01 == pytest.approx((0.9 + 0.7) / 2)


def test_all_edges_graph_keeps_one_way_edges():
    indices = np.array([[1, 2], [0, -1], [3, -1], [2, 0]], dtype=np.int32)
    scores = np.ones((4, 2), dtype=np.float32)

    graph = build_window_graph(indices, scores, "all")
    pairs = set(zip(graph.sources.tolist(), graph.targets.tolist()))
    assert pairs == {(0, 1), (0, 2), (2, 3), (0, 3)}
    assert np.all(graph.sources < graph.targets)


def _clustered_embeddings(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    centres = generator.normal(size=(rows // 20, 24)).astype(np.float32)
    assignments = generator.integers(0, len(centres), size=rows)
    anchors = centres[assignments] + 0.5 * generator.normal(size=(rows, 24)).astype(np.float32)
    positives = anchors + 0.2 * generator.normal(size=(rows, 24)).astype(np.float32)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    positives /= np.linalg.norm(positives, axis=1, keepdims=True)
    return anchors, positives


@pytest.mark.parametrize("backend", ["leiden", "metis"])
def test_backends_respect_cluster_size_after_clustering(backend):
    rows, cluster_size = 1003, 8
    anchors, positives = _clustered_embeddings(rows, 0)
    text_ids = np.column_stack([np.arange(rows), rows + np.arange(rows) % 900])
    windows = compute_rank_windows(anchors, positives, text_ids[:, 1], 5, 30, show_progress_bar=False)
    graph = build_window_graph(windows.indices, windows.scores, "mutual")

    membership = get_backend(backend).partition(graph, cluster_size, seed=0, iterations=2)
    assert len(membership) == rows
    if backend == "leiden":
        assert np.bincount(membership).max() <= cluster_size

    sources, targets, weights = directed_edges(windows.indices, windows.scores)
    assignment = build_clusters(membership, text_ids, cluster_size, sources, targets, weights,
                                show_progress_bar=False)
    sizes = np.bincount(assignment.cluster_ids)
    assert np.all(sizes[:-1] == cluster_size)
    assert sizes[-1] == rows % cluster_size
    assert (assignment.rows_in_full_communities + assignment.rows_attached + assignment.rows_packed) == rows


@pytest.mark.parametrize("policy", ["attach", "random"])
def test_clusters_never_repeat_a_text(policy):
    rows, cluster_size = 800, 8
    anchors, positives = _clustered_embeddings(rows, 1)
    # Every positive text is shared by four rows, and some anchors repeat positives.
    text_ids = np.column_stack([np.arange(rows), rows + np.arange(rows) // 4])
    text_ids[::50, 0] = text_ids[1::50, 1]
    positives = positives[(np.arange(rows) // 4) * 4]
    windows = compute_rank_windows(anchors, positives, text_ids[:, 1], 2, 20, show_progress_bar=False)
    graph = build_window_graph(windows.indices, windows.scores, "mutual")
    membership = get_backend("leiden").partition(graph, cluster_size, seed=0)
    sources, targets, weights = directed_edges(windows.indices, windows.scores)

    assignment = build_clusters(membership, text_ids, cluster_size, sources, targets, weights,
                                isolated_rows=policy, show_progress_bar=False)
    for cluster in np.unique(assignment.cluster_ids):
        members = np.nonzero(assignment.cluster_ids == cluster)[0]
        texts = [text for row in members for text in set(text_ids[row].tolist())]
        assert len(texts) == len(set(texts)), f"cluster {cluster} repeats a text"


def test_attach_puts_more_rows_in_full_clusters_than_random():
    rows, cluster_size = 1200, 8
    anchors, positives = _clustered_embeddings(rows, 2)
    text_ids = np.column_stack([np.arange(rows), rows + np.arange(rows)])
    windows = compute_rank_windows(anchors, positives, text_ids[:, 1], 5, 30, show_progress_bar=False)
    graph = build_window_graph(windows.indices, windows.scores, "mutual")
    membership = get_backend("leiden").partition(graph, cluster_size, seed=0)
    sources, targets, weights = directed_edges(windows.indices, windows.scores)

    attached = build_clusters(membership, text_ids, cluster_size, sources, targets, weights, "attach",
                              show_progress_bar=False)
    packed = build_clusters(membership, text_ids, cluster_size, sources, targets, weights, "random",
                            show_progress_bar=False)
    assert packed.rows_attached == 0
    assert attached.rows_attached > 0
    assert attached.rows_in_full_clusters > packed.rows_in_full_clusters


def test_unknown_backend_error_lists_choices():
    with pytest.raises(ValueError, match=r"community_backend='louvain' is unknown.*leiden"):
        get_backend("louvain")
