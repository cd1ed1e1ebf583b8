"""Scaling paths: approximate search calibration, the lean graph build, the filtered union-find,
mining from precomputed embeddings, multi-process encoding and the synthetic benchmark data."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from b3_st import B3Config, mine
from b3_st.clusters import _attach_small, _relabel
from b3_st.data import read_pairs
from b3_st.graph import build_window_graph, directed_edges
from b3_st.mining import mine_from_embeddings
from b3_st.ranking import (
    INITIAL_REFINE_FACTOR,
    MAX_PROBED_SHARE,
    MAX_REFINE_FACTOR,
    MIN_REFINE_GAIN,
    compute_rank_windows,
    exact_search,
    ivf_parameters,
    search_windows,
    window_recall,
)
from b3_st.teacher import embed_pairs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from synthetic_pairs import synthetic_pairs  # noqa: E402


def _clustered(rows: int, dim: int, clusters: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    centres = generator.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    latent = centres[generator.integers(clusters, size=rows)]
    latent = latent + spread * generator.normal(size=(rows, dim)).astype(np.float32) / np.sqrt(dim)
    anchors = latent + 0.3 * generator.normal(size=(rows, dim)).astype(np.float32) / np.sqrt(dim)
    positives = latent + 0.3 * generator.normal(size=(rows, dim)).astype(np.float32) / np.sqrt(dim)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    positives /= np.linalg.norm(positives, axis=1, keepdims=True)
    return anchors.astype(np.float32), positives.astype(np.float32)


@pytest.mark.parametrize(
    ("rows", "lists"),
    [(1_000, 25), (10_000, 200), (150_001, 775), (1_000_000, 2000), (10_000_000, 6325)],
)
def test_ivf_parameters_follow_row_count(rows, lists):
    parameters = ivf_parameters(rows, 384)
    assert parameters.lists == lists
    assert parameters.training_rows == min(rows, 64 * lists)
    assert parameters.training_rows >= 39 * parameters.lists
    assert parameters.subquantizers == 192
    assert 8 <= parameters.initial_probes <= parameters.max_probes
    assert parameters.max_probes == max(parameters.initial_probes, int(lists * MAX_PROBED_SHARE))


def test_ivf_parameters_odd_dimension_uses_one_dimension_per_code():
    assert ivf_parameters(50_000, 33).subquantizers == 33


def test_approximate_search_reaches_recall_target():
    anchors, positives = _clustered(8000, 32, 80, 0.5, seed=0)
    positive_ids = np.arange(8000)
    windows = compute_rank_windows(anchors, positives, positive_ids, 5, 20, exact_search_max_rows=1000,
                                   recall_sample_rows=500, recall_target=0.9, show_progress_bar=False)

    assert windows.search.startswith("ivf")
    last = windows.calibration[-1]
    assert last["recall"] >= 0.9
    assert windows.search.endswith(f"refine{last['refine_factor']},nprobe={last['probes']}")
    exact, _ = search_windows(exact_search(positives), anchors, np.arange(8000), positive_ids, 26, 5, 20)
    assert window_recall(windows.indices, exact) >= 0.85
    assert windows.recall >= 0.85


def test_calibration_doubles_one_setting_per_step(caplog):
    # Uniform random directions have no structure for the lists to follow, so 0.999 is out of reach.
    generator = np.random.default_rng(1)
    anchors = generator.normal(size=(6000, 16)).astype(np.float32)
    positives = generator.normal(size=(6000, 16)).astype(np.float32)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    positives /= np.linalg.norm(positives, axis=1, keepdims=True)

    with caplog.at_level(logging.WARNING, logger="b3_st.ranking"):
        windows = compute_rank_windows(anchors, positives, np.arange(6000), 5, 20, exact_search_max_rows=1000,
                                       recall_sample_rows=300, recall_target=0.999, show_progress_bar=False)

    parameters = ivf_parameters(6000, 16)
    steps = windows.calibration
    assert (steps[0]["probes"], steps[0]["refine_factor"]) == (parameters.initial_probes, INITIAL_REFINE_FACTOR)
    assert steps[-1]["probes"] == parameters.max_probes
    assert len(steps) > 2
    for before, after in zip(steps, steps[1:]):
        more_probes = after["probes"] == min(2 * before["probes"], parameters.max_probes) > before["probes"]
        more_refine = after["refine_factor"] == 2 * before["refine_factor"] <= MAX_REFINE_FACTOR
        assert more_probes != more_refine, (before, after)
        assert after["coverage"] >= before["coverage"]
        ranking_loss = before["coverage"] - before["recall"]
        if more_refine and before["probes"] < parameters.max_probes:
            assert ranking_loss > 1 - before["coverage"], (before, after)
        if more_probes and before["refine_factor"] < MAX_REFINE_FACTOR:
            assert ranking_loss <= 1 - before["coverage"] or _refine_stalled(steps, before), (before, after)
    assert all(step["recall"] < 0.999 for step in steps)
    assert "below recall_target=0.999" in caplog.text


def _refine_stalled(steps: list[dict], step: dict) -> bool:
    """Whether a refine doubling before ``step`` gained less than MIN_REFINE_GAIN."""
    earlier = steps[: steps.index(step) + 1]
    return any(later["refine_factor"] > former["refine_factor"] and later["recall"] - former["recall"] < MIN_REFINE_GAIN
               for former, later in zip(earlier, earlier[1:]))


def test_exact_search_stays_below_threshold():
    anchors, positives = _clustered(900, 16, 10, 0.5, seed=2)
    windows = compute_rank_windows(anchors, positives, np.arange(900), 5, 20, exact_search_max_rows=900,
                                   show_progress_bar=False)
    assert windows.search == "exact"
    assert windows.calibration == []


def test_search_on_gpu_needs_faiss_gpu():
    anchors, positives = _clustered(300, 16, 5, 0.5, seed=3)
    if faiss.get_num_gpus() == 0:
        with pytest.raises(RuntimeError, match="search_on_gpu=True needs the faiss-gpu package"):
            compute_rank_windows(anchors, positives, np.arange(300), 5, 20, search_on_gpu=True,
                                 show_progress_bar=False)
    else:
        gpu = compute_rank_windows(anchors, positives, np.arange(300), 5, 20, search_on_gpu=True,
                                   show_progress_bar=False)
        cpu = compute_rank_windows(anchors, positives, np.arange(300), 5, 20, show_progress_bar=False)
        assert gpu.search == "exact-gpu"
        assert window_recall(gpu.indices, cpu.indices) > 0.99


def _random_windows(rows: int, window: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    indices = np.full((rows, window), -1, dtype=np.int32)
    scores = np.full((rows, window), -np.inf, dtype=np.float32)
    for row in range(rows):
        length = int(generator.integers(0, window + 1))
        candidates = np.delete(np.arange(rows), row)
        # Neighbours drawn from nearby rows make many pairs mutual.
        members = generator.choice(candidates[: min(len(candidates), 3 * window)] if row < 3 * window
                                   else candidates[row - 2 * window : row + window], size=length, replace=False)
        indices[row, :length] = members
        scores[row, :length] = np.sort(generator.random(length).astype(np.float32))[::-1]
    return indices, scores


def _reference_graph(indices: np.ndarray, scores: np.ndarray, edges: str) -> dict[tuple[int, int], float]:
    directed: dict[tuple[int, int], list[float]] = {}
    for row in range(len(indices)):
        for member, score in zip(indices[row], scores[row]):
            if member >= 0:
                pair = (min(row, int(member)), max(row, int(member)))
                directed.setdefault(pair, []).append(float(score))
    return {pair: sum(values) / len(values) for pair, values in directed.items()
            if edges == "all" or len(values) == 2}


@pytest.mark.parametrize("edges", ["mutual", "all"])
def test_graph_matches_reference(edges):
    indices, scores = _random_windows(400, 15, seed=4)
    graph = build_window_graph(indices, scores, edges)

    expected = _reference_graph(indices, scores, edges)
    found = {(int(source), int(target)): float(weight)
             for source, target, weight in zip(graph.sources, graph.targets, graph.weights)}
    assert found.keys() == expected.keys()
    for pair, weight in expected.items():
        assert found[pair] == pytest.approx(weight, rel=1e-6)
    assert np.all(graph.sources < graph.targets)
    assert len(expected) > 100


def test_graph_of_empty_windows_has_no_edges():
    indices = np.full((5, 3), -1, dtype=np.int32)
    scores = np.full((5, 3), -np.inf, dtype=np.float32)
    for edges in ("mutual", "all"):
        assert build_window_graph(indices, scores, edges).edge_count == 0


def test_directed_edges_are_int32_without_padding():
    indices, scores = _random_windows(50, 6, seed=5)
    sources, targets, weights = directed_edges(indices, scores)
    assert sources.dtype == np.int32
    assert targets.dtype == np.int32
    assert len(sources) == int((indices >= 0).sum())
    assert np.all(targets >= 0)
    assert np.all(np.isfinite(weights))


def _attach_plain_loop(labels, text_ids, cluster_size, sources, targets, weights):
    """The greedy merge written as a plain loop over every candidate pair, as a reference."""
    sizes = np.bincount(labels)
    small = sizes[labels] < cluster_size
    best: dict[tuple[int, int], float] = {}
    for source, target, weight in zip(sources.tolist(), targets.tolist(), weights.tolist()):
        first, second = int(labels[source]), int(labels[target])
        if small[source] and small[target] and first != second:
            pair = (min(first, second), max(first, second))
            best[pair] = max(best.get(pair, -np.inf), weight)

    parent = list(range(len(sizes)))
    size = sizes.tolist()
    texts = [set() for _ in sizes]
    for row in np.nonzero(small)[0]:
        texts[labels[row]].update(text_ids[row].tolist())

    def find(node):
        while parent[node] != node:
            node = parent[node]
        return node

    for first, second in sorted(best, key=lambda pair: (-best[pair], pair)):
        first, second = find(first), find(second)
        if first == second or size[first] + size[second] > cluster_size:
            continue
        if texts[first] & texts[second]:
            continue
        if size[first] < size[second]:
            first, second = second, first
        parent[second] = first
        size[first] += size[second]
        texts[first] |= texts[second]
    roots = np.array([find(label) for label in range(len(sizes))])
    return _relabel(roots[labels])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attach_small_matches_plain_loop(seed):
    generator = np.random.default_rng(seed)
    rows, cluster_size = 3000, 8
    # Communities of 1 to 7 rows, as the backend leaves them, in shuffled row order.
    community_sizes = generator.integers(1, cluster_size, size=rows)
    labels = generator.permutation(np.repeat(np.arange(rows), community_sizes)[:rows])
    # Repeated texts make some merges fail on the text check, not only on size.
    text_ids = np.column_stack([np.arange(rows), rows + generator.integers(0, 2500, size=rows)])
    sources = generator.integers(0, rows, size=40_000).astype(np.int32)
    targets = generator.integers(0, rows, size=40_000).astype(np.int32)
    # Two-decimal weights give many ties, which must break the same way.
    weights = np.round(generator.random(40_000), 2).astype(np.float32)

    fast = _attach_small(labels, text_ids, cluster_size, sources, targets, weights, show_progress_bar=False)
    plain = _attach_plain_loop(labels, text_ids, cluster_size, sources, targets, weights)
    np.testing.assert_array_equal(fast, plain)
    assert np.bincount(fast).max() <= cluster_size
    assert len(np.unique(fast)) < len(np.unique(labels))


def test_mine_from_embeddings_matches_mine(tiny_teacher_path, wordnet_small, tmp_path):
    config = B3Config(teacher=tiny_teacher_path, show_progress_bar=False, cache_dir=str(tmp_path))
    result = mine(wordnet_small, config)

    pairs = read_pairs(wordnet_small)
    embeddings = embed_pairs(pairs, config)
    mined = mine_from_embeddings(embeddings.anchors, embeddings.positives, pairs.text_ids, config)

    np.testing.assert_array_equal(mined.assignment.cluster_ids, result.cluster_ids)
    np.testing.assert_array_equal(mined.windows.indices, result.windows)
    assert list(mined.seconds) == ["search", "graph", "communities", "clusters", "statistics"]
    seconds = result.stats["seconds"]
    assert seconds["mining_after_encode"] == pytest.approx(
        sum(seconds[stage] for stage in mined.seconds), abs=0.01)


def test_mine_from_embeddings_rejects_bad_shapes():
    anchors = np.zeros((200, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"anchors \(200, 8\) and positives \(199, 8\)"):
        mine_from_embeddings(anchors, anchors[:199], np.zeros((200, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"text_ids has shape \(200,\), expected \(200, 2\)"):
        mine_from_embeddings(anchors, anchors, np.zeros(200, dtype=np.int64))


def test_encode_devices_pool_matches_one_process(tiny_teacher_path, wordnet_small, tmp_path):
    pairs = read_pairs(wordnet_small.select(range(300)))
    single = embed_pairs(pairs, B3Config(teacher=tiny_teacher_path, show_progress_bar=False,
                                         cache_dir=str(tmp_path / "single")))
    pooled = embed_pairs(pairs, B3Config(teacher=tiny_teacher_path, show_progress_bar=False,
                                         cache_dir=str(tmp_path / "pooled"), encode_devices=["cpu", "cpu"]))

    assert not pooled.from_cache
    np.testing.assert_allclose(pooled.anchors, single.anchors, atol=1e-5)
    np.testing.assert_allclose(pooled.positives, single.positives, atol=1e-5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"recall_target": 0.0}, r"recall_target=0.0 is invalid"),
        ({"recall_target": 1.5}, r"recall_target=1.5 is invalid"),
        ({"encode_devices": []}, r"encode_devices=\[\] is invalid"),
        ({"encode_devices": "cuda:0"}, r"encode_devices='cuda:0' is invalid"),
    ],
)
def test_config_rejects_invalid_scale_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        B3Config(**settings)


def test_speed_settings_keep_the_cache_key():
    assert B3Config(encode_devices=["cpu", "cpu"]).settings_key() == B3Config().settings_key()
    assert B3Config(recall_target=0.95).settings_key() != B3Config().settings_key()


def test_synthetic_pairs_repeat_positives_consistently():
    anchors, positives, text_ids = synthetic_pairs(5000, dim=48, seed=0)
    assert anchors.shape == positives.shape == (5000, 48)
    assert anchors.dtype == positives.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(anchors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(positives, axis=1), 1.0, atol=1e-5)

    positive_ids = text_ids[:, 1]
    assert 1 - len(np.unique(positive_ids)) / 5000 == pytest.approx(0.12, abs=0.01)
    first_row = {}
    for row, text in enumerate(positive_ids.tolist()):
        first_row.setdefault(text, row)
        np.testing.assert_array_equal(positives[row], positives[first_row[text]])
    assert np.all(text_ids[:, 0] == np.arange(5000))
    assert positive_ids.min() >= 5000
