"""Batch hardness: how close in-batch negatives are to each anchor, by teacher similarity."""

from __future__ import annotations

import numpy as np

_BATCHES_PER_CHUNK = 256


def batch_hardness(anchors: np.ndarray, positives: np.ndarray, batches: list[np.ndarray]) -> float:
    """Return the mean over rows of the highest similarity between a row's anchor and another
    row's positive in its batch.

    Random batches of WordNet definitions at batch size 64 score about 0.29 with
    all-MiniLM-L6-v2; B3 batches score higher because clusters hold rows with similar positives.
    Batches of one row have no in-batch negative and are skipped.
    """
    batches = [batch for batch in batches if len(batch) > 1]
    if not batches:
        return float("nan")

    total = 0.0
    counted = 0
    by_size: dict[int, list[np.ndarray]] = {}
    for batch in batches:
        by_size.setdefault(len(batch), []).append(batch)

    for size, same_size in by_size.items():
        mask = np.eye(size, dtype=bool)
        for start in range(0, len(same_size), _BATCHES_PER_CHUNK):
            rows = np.stack(same_size[start : start + _BATCHES_PER_CHUNK])
            similarities = np.einsum("bid,bjd->bij", anchors[rows], positives[rows])
            similarities[:, mask] = -np.inf
            total += float(similarities.max(axis=2).sum())
            counted += rows.size
    return total / counted


def random_batches(rows: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Return a seeded random split of ``range(rows)`` into batches of ``batch_size``."""
    order = np.random.default_rng(seed).permutation(rows)
    return [order[start : start + batch_size] for start in range(0, rows, batch_size)]


def cluster_size_histogram(labels: np.ndarray) -> dict[str, int]:
    """Return ``{cluster size: number of clusters of that size}``, sizes as strings as in JSON."""
    sizes = np.bincount(labels)
    sizes = sizes[sizes > 0]
    values, counts = np.unique(sizes, return_counts=True)
    return {str(int(value)): int(count) for value, count in zip(values, counts)}
