"""Rank windows: for each anchor, the positives at ranks ``[skip_top, skip_top + window_size)``."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import faiss
import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

# Extra neighbours fetched per query so that excluded rows (the row itself and rows with an
# identical positive text) can be dropped without shortening the window. Rows whose positive text
# is shared by more rows than this may get a window shorter than window_size.
MAX_EXTRA_NEIGHBOURS = 256
QUERY_CHUNK_ROWS = 8192


@dataclass
class RankWindows:
    """Rank windows of every row.

    Attributes:
        indices: ``(rows, window_size)`` int32 row indices, best rank first, ``-1`` where a window
            is shorter than ``window_size``.
        scores: ``(rows, window_size)`` float32 teacher similarities matching ``indices``
            (``-inf`` at padding).
        search: ``"exact"`` or the approximate index used, such as ``"ivf4096,nprobe=32"``.
        recall: Recall of the windows against exact search on a sample, ``None`` for exact search.
        seconds: Time spent searching and cutting windows.
    """

    indices: np.ndarray
    scores: np.ndarray
    search: str = "exact"
    recall: float | None = None
    seconds: float = 0.0

    @property
    def window_lengths(self) -> np.ndarray:
        return (self.indices >= 0).sum(axis=1)


def _cut_windows(
    neighbour_ids: np.ndarray,
    neighbour_scores: np.ndarray,
    query_rows: np.ndarray,
    positive_ids: np.ndarray,
    skip_top: int,
    window_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop false negatives from sorted neighbour lists, then keep ranks ``[skip_top, skip_top+window_size)``."""
    valid = neighbour_ids >= 0
    safe_ids = np.where(valid, neighbour_ids, 0)
    valid &= positive_ids[safe_ids] != positive_ids[query_rows][:, None]

    # Rank of each valid neighbour among the valid ones, 1-based.
    ranks = np.cumsum(valid, axis=1)
    keep = valid & (ranks > skip_top) & (ranks <= skip_top + window_size)

    indices = np.full((len(query_rows), window_size), -1, dtype=np.int32)
    scores = np.full((len(query_rows), window_size), -np.inf, dtype=np.float32)
    rows, columns = np.nonzero(keep)
    slots = ranks[rows, columns] - skip_top - 1
    indices[rows, slots] = neighbour_ids[rows, columns]
    scores[rows, slots] = neighbour_scores[rows, columns]
    return indices, scores


def _neighbour_count(positive_ids: np.ndarray, skip_top: int, window_size: int, rows: int) -> int:
    largest_group = int(np.bincount(positive_ids).max()) if len(positive_ids) else 1
    extra = min(largest_group, MAX_EXTRA_NEIGHBOURS)
    if largest_group > MAX_EXTRA_NEIGHBOURS:
        logger.warning(
            "%d rows share one positive text; rows with more than %d duplicates may get short windows.",
            largest_group,
            MAX_EXTRA_NEIGHBOURS,
        )
    return min(skip_top + window_size + extra, rows)


def build_index(positives: np.ndarray, exact_search_max_rows: int, seed: int) -> tuple[faiss.Index, str]:
    """Build an inner-product index over the positives: flat up to the threshold, IVF above it.

    The IVF index uses about ``4 * sqrt(rows)`` lists (at least 64) and probes enough of them
    that each query scans roughly 0.8% of the data, at least 16 lists.
    """
    rows, dim = positives.shape
    if rows <= exact_search_max_rows:
        index = faiss.IndexFlatIP(dim)
        index.add(positives)
        return index, "exact"

    nlist = max(64, int(4 * math.sqrt(rows)))
    nprobe = min(nlist, max(16, int(round(nlist * 0.008))))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)

    training_rows = min(rows, nlist * 64)
    generator = np.random.default_rng(seed)
    sample = positives[np.sort(generator.choice(rows, size=training_rows, replace=False))]
    logger.info("Training IVF index: %d lists on %d rows", nlist, training_rows)
    index.train(sample)
    index.add(positives)
    index.nprobe = nprobe
    return index, f"ivf{nlist},nprobe={nprobe}"


def window_recall(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Return the share of exact-window members that the approximate windows also contain."""
    found = 0
    total = 0
    for approximate_row, exact_row in zip(approximate, exact):
        exact_members = exact_row[exact_row >= 0]
        total += len(exact_members)
        found += np.isin(exact_members, approximate_row[approximate_row >= 0]).sum()
    return found / total if total else 1.0


def compute_rank_windows(
    anchors: np.ndarray,
    positives: np.ndarray,
    positive_ids: np.ndarray,
    skip_top: int,
    window_size: int,
    exact_search_max_rows: int = 150_000,
    recall_sample_rows: int = 2000,
    seed: int = 0,
    show_progress_bar: bool = True,
) -> RankWindows:
    """Search every anchor over all positives and cut its rank window.

    A row's own positive and every row whose positive text equals it are never in its window:
    they are false negatives. The ``skip_top`` ranks are counted after removing them.
    """
    start = time.perf_counter()
    rows = len(anchors)
    neighbours = _neighbour_count(positive_ids, skip_top, window_size, rows)
    index, search = build_index(positives, exact_search_max_rows, seed)

    indices = np.empty((rows, window_size), dtype=np.int32)
    scores = np.empty((rows, window_size), dtype=np.float32)
    chunks = range(0, rows, QUERY_CHUNK_ROWS)
    for chunk_start in tqdm(chunks, desc=f"Ranking ({search})", disable=not show_progress_bar, unit="chunk"):
        query_rows = np.arange(chunk_start, min(chunk_start + QUERY_CHUNK_ROWS, rows))
        neighbour_scores, neighbour_ids = index.search(anchors[query_rows], neighbours)
        indices[query_rows], scores[query_rows] = _cut_windows(
            neighbour_ids, neighbour_scores, query_rows, positive_ids, skip_top, window_size
        )

    recall = None
    if search != "exact":
        recall = _sampled_recall(anchors, positives, positive_ids, indices, skip_top, window_size,
                                 neighbours, recall_sample_rows, seed)
        logger.info("Approximate search %s: window recall %.3f on %d sampled rows", search, recall,
                    min(recall_sample_rows, rows))

    short = int((indices[:, -1] < 0).sum())
    if short:
        logger.info("%d rows have fewer than %d window members", short, window_size)

    return RankWindows(indices=indices, scores=scores, search=search, recall=recall,
                       seconds=time.perf_counter() - start)


def _sampled_recall(
    anchors: np.ndarray,
    positives: np.ndarray,
    positive_ids: np.ndarray,
    approximate: np.ndarray,
    skip_top: int,
    window_size: int,
    neighbours: int,
    sample_rows: int,
    seed: int,
) -> float:
    generator = np.random.default_rng(seed)
    sample = np.sort(generator.choice(len(anchors), size=min(sample_rows, len(anchors)), replace=False))
    exact_index = faiss.IndexFlatIP(positives.shape[1])
    exact_index.add(positives)
    neighbour_scores, neighbour_ids = exact_index.search(anchors[sample], neighbours)
    exact, _ = _cut_windows(neighbour_ids, neighbour_scores, sample, positive_ids, skip_top, window_size)
    return window_recall(approximate[sample], exact)
