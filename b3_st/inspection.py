"""Inspecting a mined result: summary text, example batches and batch hardness of B3 against random batches."""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from b3_st.batches import EpochBatcher
from b3_st.data import PairData
from b3_st.result import MinedResult
from b3_st.stats import random_batches

logger = logging.getLogger(__name__)

_BATCHES_PER_CHUNK = 256


@dataclass
class HardnessComparison:
    """Hardness of every batch of one epoch, for B3 batches and for random batches of the same size.

    Attributes:
        batch_size: Rows per batch.
        seed: Seed of the epoch's B3 shuffle and of the random batches.
        b3_batches: The B3 batches as arrays of row indices.
        b3: Hardness of each B3 batch with more than one row.
        random: Hardness of each random batch with more than one row.
    """

    batch_size: int
    seed: int
    b3_batches: list[np.ndarray]
    b3: np.ndarray
    random: np.ndarray


def per_batch_hardness(
    anchors: np.ndarray, positives: np.ndarray, batches: list[np.ndarray], show_progress_bar: bool = False
) -> np.ndarray:
    """Return each batch's mean over rows of the highest similarity between the row's anchor and
    another row's positive in the batch.

    This is :func:`b3_st.stats.batch_hardness` per batch: the mean of the returned values,
    weighted by batch size, equals it. Batches of one row have no in-batch negative and are left
    out of the result.
    """
    batches = [batch for batch in batches if len(batch) > 1]
    hardness = np.empty(len(batches), dtype=np.float64)
    by_size: dict[int, list[int]] = {}
    for index, batch in enumerate(batches):
        by_size.setdefault(len(batch), []).append(index)

    progress = tqdm(total=len(batches), desc="Batch hardness", unit="batch", disable=not show_progress_bar)
    for size, indices in by_size.items():
        mask = np.eye(size, dtype=bool)
        for start in range(0, len(indices), _BATCHES_PER_CHUNK):
            chunk = indices[start : start + _BATCHES_PER_CHUNK]
            rows = np.stack([batches[index] for index in chunk])
            similarities = np.einsum("bid,bjd->bij", anchors[rows], positives[rows])
            similarities[:, mask] = -np.inf
            hardness[chunk] = similarities.max(axis=2).mean(axis=1)
            progress.update(len(chunk))
    progress.close()
    return hardness


def compare_hardness(
    result: MinedResult,
    pairs: PairData,
    anchors: np.ndarray,
    positives: np.ndarray,
    batch_size: int,
    seed: int = 0,
    show_progress_bar: bool = False,
) -> HardnessComparison:
    """Measure the hardness of one epoch of B3 batches and of random batches of ``batch_size`` rows.

    Raises:
        ValueError: ``batch_size`` is not a multiple of the cluster size.
    """
    batcher = EpochBatcher(result.cluster_ids, result.config.cluster_size, batch_size, False, pairs.text_ids)
    b3_batches = batcher.epoch_batches(seed)
    return HardnessComparison(
        batch_size=batch_size,
        seed=seed,
        b3_batches=b3_batches,
        b3=per_batch_hardness(anchors, positives, b3_batches, show_progress_bar),
        random=per_batch_hardness(anchors, positives, random_batches(result.rows, batch_size, seed),
                                  show_progress_bar),
    )


def community_sizes(result: MinedResult) -> dict[int, int] | None:
    """Return ``{community size: communities}`` from the mining statistics, or ``None`` if absent.

    The communities are the backend's groups before they were packed into clusters of exactly K
    rows; the JSON metadata stores the sizes as text keys.
    """
    histogram = result.stats.get("community_size_histogram")
    if not histogram:
        return None
    return {int(size): int(count) for size, count in sorted(histogram.items(), key=lambda item: int(item[0]))}


def cluster_sizes(result: MinedResult) -> dict[int, int]:
    """Return ``{cluster size: clusters}`` of the final clusters."""
    sizes = np.bincount(result.cluster_ids)
    values, counts = np.unique(sizes[sizes > 0], return_counts=True)
    return {int(value): int(count) for value, count in zip(values, counts)}


def _format_histogram(histogram: dict[int, int]) -> str:
    return ", ".join(f"{size}: {count}" for size, count in histogram.items())


def summarize(result: MinedResult) -> str:
    """Return a human-readable summary of the settings and statistics of ``result``."""
    config = result.config
    stats = result.stats
    lines = [
        f"Rows: {result.rows:,}",
        f"Teacher: {config.teacher} (revision: {config.teacher_revision or 'default branch, not pinned'})",
        f"Settings: p (skip_top) = {config.skip_top}, m (window_size) = {config.window_size}, "
        f"K (cluster_size) = {config.cluster_size}, mining seed = {config.seed}, edges = {config.edges}, "
        f"leftover rows = {config.isolated_rows}, communities = {config.community_backend}",
        f"Columns: {result.metadata.get('anchor_column')} (anchor), {result.metadata.get('positive_column')} (positive)",
        f"Fingerprint: {result.fingerprint}",
        f"Clusters (size: count): {_format_histogram(cluster_sizes(result))}",
    ]
    if "edges" in stats:
        lines.append(f"Graph: {stats['edges']:,} edges, {stats.get('isolated_rows', 0):,} isolated rows")
    if "rows_in_full_clusters_share" in stats:
        lines.append(
            f"Rows in clusters built from window edges: {100 * stats['rows_in_full_clusters_share']:.1f}% "
            f"({stats.get('rows_in_full_communities', 0):,} in whole communities, "
            f"{stats.get('rows_attached', 0):,} attached, {stats.get('rows_packed', 0):,} packed)"
        )
    communities = community_sizes(result)
    if communities:
        lines.append(f"Community sizes before packing (size: count): {_format_histogram(communities)}")
    if "hardness_b3" in stats:
        lines.append(
            f"Batch hardness measured when mining, batch size {stats.get('hardness_batch_size')}: "
            f"B3 {stats['hardness_b3']:.3f}, random {stats['hardness_random']:.3f}"
        )

    hub = result.metadata.get("hub")
    if hub and hub.get("repo_id"):
        lines.append(f"Hub: {hub['repo_id']} (revision {hub.get('revision') or 'main'}, commit {hub.get('commit')})")
    else:
        lines.append("Hub: not pushed (local only)")
    return "\n".join(lines)


def summarize_hardness(comparison: HardnessComparison) -> str:
    """Return one paragraph comparing the per-batch hardness of B3 and random batches."""
    b3, random = comparison.b3, comparison.random
    return (
        f"Batch hardness at batch size {comparison.batch_size} (epoch seed {comparison.seed}), mean teacher "
        f"similarity of each anchor's hardest in-batch negative:\n"
        f"  B3:     mean {b3.mean():.3f}, median {np.median(b3):.3f}, range {b3.min():.3f} to {b3.max():.3f} "
        f"over {len(b3)} batches\n"
        f"  random: mean {random.mean():.3f}, median {np.median(random):.3f}, range {random.min():.3f} to "
        f"{random.max():.3f} over {len(random)} batches"
    )


def format_example_batches(
    pairs: PairData,
    comparison: HardnessComparison,
    cluster_size: int,
    count: int = 3,
    width: int = 100,
) -> str:
    """Return the first cluster of the first ``count`` B3 batches as text, one pair per line."""
    batches = comparison.b3_batches
    lines = []
    for number, batch in enumerate(batches[:count], start=1):
        hardness = f", hardness {comparison.b3[number - 1]:.3f}" if len(batch) > 1 else ""
        lines.append(f"Batch {number} of {len(batches)} ({len(batch)} rows{hardness}), its first cluster of "
                     f"{min(cluster_size, len(batch))} rows (anchor -> positive):")
        for row in batch[:cluster_size]:
            text = f"{pairs.anchors[row]!r} -> {pairs.positives[row]!r}"
            lines.append("  " + textwrap.shorten(text, width=width, placeholder=" ..."))
    return "\n".join(lines)
