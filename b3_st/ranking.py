"""Rank windows: for each anchor, the positives at ranks ``[skip_top, skip_top + window_size)``.

Up to ``exact_search_max_rows`` rows every anchor is searched exactly. Above it the positives go
into an approximate index: IVF lists with 4-bit product-quantised fast-scan codes, whose best
candidates are re-scored with exact inner products. Its probed lists and re-scored candidates are
raised until the windows of a sample of rows reach a recall target against exact search (see
:func:`ivf_parameters` and :func:`compute_rank_windows`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

# Extra neighbours fetched per query so that excluded rows (the row itself and rows with an
# identical positive text) can be dropped without shortening the window. Rows whose positive text
# is shared by more rows than this may get a window shorter than window_size.
MAX_EXTRA_NEIGHBOURS = 256
QUERY_CHUNK_ROWS = 8192

# Candidates re-scored exactly per requested neighbour, at the first calibration step and at most.
INITIAL_REFINE_FACTOR = 2
MAX_REFINE_FACTOR = 16
# A refine factor doubling that gains less window recall than this is not repeated.
MIN_REFINE_GAIN = 0.005
# Rows whose windows tune the approximate index.
CALIBRATION_ROWS = 1000
# Largest share of lists that calibration probes.
MAX_PROBED_SHARE = 0.25
# faiss GPU indexes return at most this many neighbours per query, as sentence-transformers 6.3
# documents for its own faiss GPU search in mine_hard_negatives.
GPU_MAX_NEIGHBOURS = 2048

SearchFunction = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class RankWindows:
    """Rank windows of every row.

    Attributes:
        indices: ``(rows, window_size)`` int32 row indices, best rank first, ``-1`` where a window
            is shorter than ``window_size``.
        scores: ``(rows, window_size)`` float32 teacher similarities matching ``indices``
            (``-inf`` at padding).
        search: ``"exact"``, ``"exact-gpu"`` or the approximate index used, such as
            ``"ivf4000,pq192x4fs,refine2,nprobe=64"``.
        recall: Recall of the windows against exact search on a sample, ``None`` for exact search.
        seconds: Time spent searching and cutting windows.
        calibration: One entry per index setting tried on the calibration rows: ``probes``,
            ``refine_factor``, window ``recall`` and ``coverage`` (the share of exact-window members
            that lie in a probed list). Empty for exact search.
        stage_seconds: Seconds spent building the index, calibrating it, searching all rows and
            measuring recall.
        dropped_by_margin: Window members removed by ``relative_margin`` (see
            :func:`drop_close_candidates`), 0 without it.
    """

    indices: np.ndarray
    scores: np.ndarray
    search: str = "exact"
    recall: float | None = None
    seconds: float = 0.0
    calibration: list[dict[str, float]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    dropped_by_margin: int = 0

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


def drop_close_candidates(
    indices: np.ndarray,
    scores: np.ndarray,
    anchors: np.ndarray,
    positives: np.ndarray,
    relative_margin: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Remove window members that score too close to the anchor's own positive.

    A member is removed when its teacher score is above ``s - |s| * relative_margin``, where ``s``
    is the score of the row's anchor with its own positive. That is ``(1 - relative_margin) * s``
    for a positive ``s``, and a threshold that stays below ``s`` when ``s`` is negative. The
    remaining members move up, so each window keeps its best rank first and its ``-1`` padding at
    the end. Rows are processed in chunks, so the extra memory stays at a few chunk-sized arrays.

    Returns:
        The filtered ``indices`` and ``scores`` (new arrays) and the number of members removed.
    """
    filtered_indices = np.full_like(indices, -1)
    filtered_scores = np.full_like(scores, -np.inf)
    dropped = 0

    for start in range(0, len(indices), QUERY_CHUNK_ROWS):
        chunk = slice(start, start + QUERY_CHUNK_ROWS)
        positive_scores = np.einsum("ij,ij->i", anchors[chunk], positives[chunk])
        limits = positive_scores - np.abs(positive_scores) * relative_margin
        present = indices[chunk] >= 0
        keep = present & (scores[chunk] <= limits[:, None])
        dropped += int(present.sum() - keep.sum())

        rows, columns = np.nonzero(keep)
        slots = np.cumsum(keep, axis=1)[rows, columns] - 1
        filtered_indices[chunk][rows, slots] = indices[chunk][rows, columns]
        filtered_scores[chunk][rows, slots] = scores[chunk][rows, columns]
    return filtered_indices, filtered_scores, dropped


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


@dataclass(frozen=True)
class IVFParameters:
    """Settings of the approximate index, derived from the row count and dimension.

    Attributes:
        lists: Number of IVF lists, ``2 * sqrt(rows)`` but at most ``rows // 39`` (faiss k-means
            wants at least 39 training points per centroid) and at least 1.
        training_rows: Rows sampled to train the lists and codes, ``64 * lists`` at most.
        subquantizers: Product-quantiser sub-vectors of 4 bits each, one per 2 dimensions (one per
            dimension when the dimension is odd). Fine codes rank the scanned rows well enough that
            re-scoring a few times ``neighbours`` of them exactly finds most of the window.
        initial_probes: Lists probed at the first calibration step, about 1% of them and at least 8.
        max_probes: Most lists probed during calibration, ``MAX_PROBED_SHARE`` of them.
    """

    lists: int
    training_rows: int
    subquantizers: int
    initial_probes: int
    max_probes: int


def ivf_parameters(rows: int, dim: int) -> IVFParameters:
    """Return the approximate-index settings for ``rows`` positives of dimension ``dim``.

    The list count grows with ``sqrt(rows)``, as faiss recommends, but at half the usual
    ``4 * sqrt(rows)``. Scanning 4-bit fast-scan codes is cheap, so fewer and longer lists scan the
    same share of rows while halving the cost of training the lists and of assigning queries to
    them. In one measurement on 1M synthetic rows (``benchmarks/synthetic_pairs.py``) with two CPU
    cores, training, adding and searching took about 230 CPU seconds with 2,000 lists and 320 with
    4,000, at equal window recall.

    The probe count starts near 1% of the lists, and the calibration in
    :func:`compute_rank_windows` raises it until the sampled window recall reaches the target. The
    share of lists that a rank window spans depends on the data, not only on the row count.
    """
    lists = max(1, min(int(round(2 * math.sqrt(rows))), rows // 39))
    initial_probes = min(lists, max(8, lists // 128))
    return IVFParameters(
        lists=lists,
        training_rows=min(rows, 64 * lists),
        subquantizers=dim // 2 if dim % 2 == 0 else dim,
        initial_probes=initial_probes,
        max_probes=max(initial_probes, int(lists * MAX_PROBED_SHARE)),
    )


@dataclass
class ApproximateIndex:
    """An IVF fast-scan index with exact re-scoring, holding references to the sub-indexes that faiss uses."""

    index: faiss.IndexRefineFlat
    ivf: faiss.IndexIVFPQFastScan
    quantizer: faiss.IndexFlatIP
    parameters: IVFParameters

    def configure(self, probes: int, refine_factor: int) -> None:
        self.ivf.nprobe = probes
        self.index.k_factor = refine_factor

    def search(self, queries: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, neighbours)

    def describe(self) -> str:
        return (f"ivf{self.parameters.lists},pq{self.parameters.subquantizers}x4fs,"
                f"refine{int(self.index.k_factor)},nprobe={self.ivf.nprobe}")


def build_approximate_index(positives: np.ndarray, seed: int, show_progress_bar: bool = True) -> ApproximateIndex:
    """Train and fill an inner-product IVF index over ``positives`` with settings from :func:`ivf_parameters`."""
    rows, dim = positives.shape
    parameters = ivf_parameters(rows, dim)

    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFPQFastScan(quantizer, dim, parameters.lists, parameters.subquantizers, 4,
                                   faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    ivf.pq.cp.seed = seed

    generator = np.random.default_rng(seed)
    training = positives[np.sort(generator.choice(rows, size=parameters.training_rows, replace=False))]
    logger.info("Training IVF index: %d lists, %d sub-quantizers, on %d rows", parameters.lists,
                parameters.subquantizers, parameters.training_rows)

    # The list centroids are one large k-means that uses every thread. The product quantiser is
    # hundreds of tiny k-means, and their OpenMP barriers made its training 30 to 80 times slower on
    # two threads than on one while other processes held the cores. So it trains on one thread, and
    # ivf.train() trains only the quantiser because the list centroids are already in place.
    faiss.Clustering(dim, parameters.lists, ivf.cp).train(training, quantizer)
    quantizer.is_trained = True
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        ivf.train(training)
    finally:
        faiss.omp_set_num_threads(threads)
    del training

    index = faiss.IndexRefineFlat(ivf)
    index.k_factor = INITIAL_REFINE_FACTOR
    for start in tqdm(range(0, rows, 8 * QUERY_CHUNK_ROWS), desc="Indexing positives", unit="chunk",
                      disable=not show_progress_bar):
        index.add(positives[start : start + 8 * QUERY_CHUNK_ROWS])
    return ApproximateIndex(index=index, ivf=ivf, quantizer=quantizer, parameters=parameters)


def exact_search(positives: np.ndarray) -> SearchFunction:
    """Return a function that searches ``positives`` exactly by inner product, without copying them."""

    def search(queries: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
        return faiss.knn(queries, positives, neighbours, metric=faiss.METRIC_INNER_PRODUCT)

    return search


def gpu_exact_search(positives: np.ndarray, neighbours: int) -> SearchFunction:
    """Return a function that searches ``positives`` exactly on every visible GPU (needs ``faiss-gpu``).

    NOTE: written against the faiss GPU API (``index_cpu_to_all_gpus``) but not run here, because
    the development machine has no GPU.
    """
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        raise RuntimeError(
            "search_on_gpu=True needs the faiss-gpu package and a visible CUDA GPU, but faiss "
            f"{faiss.__version__} sees none. Install faiss-gpu, or set search_on_gpu=False to search on CPU."
        )
    if neighbours > GPU_MAX_NEIGHBOURS:
        raise ValueError(
            f"GPU search returns at most {GPU_MAX_NEIGHBOURS} neighbours, but this window needs {neighbours} "
            "(skip_top + window_size + duplicates of the largest positive text). Lower skip_top or "
            "window_size, or set search_on_gpu=False."
        )
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True
    index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(positives.shape[1]), co=options)
    index.add(positives)
    return index.search


def window_recall(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Return the share of exact-window members that the approximate windows also contain."""
    found = 0
    total = 0
    for approximate_row, exact_row in zip(approximate, exact):
        exact_members = exact_row[exact_row >= 0]
        total += len(exact_members)
        found += np.isin(exact_members, approximate_row[approximate_row >= 0]).sum()
    return found / total if total else 1.0


def search_windows(
    search: SearchFunction,
    anchors: np.ndarray,
    query_rows: np.ndarray,
    positive_ids: np.ndarray,
    neighbours: int,
    skip_top: int,
    window_size: int,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Search the anchors of ``query_rows`` in chunks and cut their rank windows."""
    indices = np.empty((len(query_rows), window_size), dtype=np.int32)
    scores = np.empty((len(query_rows), window_size), dtype=np.float32)
    chunks = range(0, len(query_rows), QUERY_CHUNK_ROWS)
    for chunk_start in tqdm(chunks, desc=progress, disable=progress is None, unit="chunk"):
        chunk = slice(chunk_start, chunk_start + QUERY_CHUNK_ROWS)
        rows = query_rows[chunk]
        neighbour_scores, neighbour_ids = search(anchors[rows], neighbours)
        indices[chunk], scores[chunk] = _cut_windows(
            neighbour_ids, neighbour_scores, rows, positive_ids, skip_top, window_size
        )
    return indices, scores


def _split_samples(rows: int, recall_sample_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw disjoint calibration and recall samples, so that the logged recall is not the tuned one."""
    calibration_rows = min(CALIBRATION_ROWS, max(1, rows // 2))
    recall_rows = max(1, min(recall_sample_rows, rows - calibration_rows))
    chosen = np.random.default_rng(seed).choice(rows, size=calibration_rows + recall_rows, replace=False)
    return np.sort(chosen[:calibration_rows]), np.sort(chosen[calibration_rows:])


def _list_coverage(
    approximate: ApproximateIndex,
    queries: np.ndarray,
    exact_windows: np.ndarray,
    list_of_positive: np.ndarray,
    probes: int,
) -> float:
    """Return the share of exact-window members that lie in one of the lists probed for their query."""
    _, probed = approximate.quantizer.search(queries, probes)
    covered = 0
    total = 0
    for query_lists, members in zip(probed, exact_windows):
        member_lists = list_of_positive[members[members >= 0]]
        covered += int(np.isin(member_lists, query_lists).sum())
        total += len(member_lists)
    return covered / total if total else 1.0


def _calibrate(
    approximate: ApproximateIndex,
    anchors: np.ndarray,
    positives: np.ndarray,
    calibration_rows: np.ndarray,
    exact_windows: np.ndarray,
    positive_ids: np.ndarray,
    neighbours: int,
    skip_top: int,
    window_size: int,
    recall_target: float,
) -> list[dict[str, float]]:
    """Raise the probed lists or the refine factor until the calibration windows reach ``recall_target``.

    Window members are lost in two ways: their list is not probed (``1 - coverage``), or they are
    scanned but ranked out by the 4-bit codes before the exact re-scoring (``coverage - recall``).
    Each step doubles the setting behind the larger loss: the probes, up to ``MAX_PROBED_SHARE`` of
    the lists, or the refine factor, up to ``MAX_REFINE_FACTOR`` and only while each doubling still
    gains ``MIN_REFINE_GAIN``. Calibration stops at the target or when neither can grow. The index
    is left at the last setting tried.
    """
    parameters = approximate.parameters
    members = np.unique(exact_windows[exact_windows >= 0])
    list_of_positive = np.full(len(positives), -1, dtype=np.int64)
    list_of_positive[members] = approximate.quantizer.search(positives[members], 1)[1][:, 0]
    queries = anchors[calibration_rows]

    probes, refine_factor = parameters.initial_probes, INITIAL_REFINE_FACTOR
    refine_helps = True
    tried: list[dict[str, float]] = []
    while True:
        approximate.configure(probes, refine_factor)
        windows, _ = search_windows(approximate.search, anchors, calibration_rows, positive_ids, neighbours,
                                    skip_top, window_size)
        recall = window_recall(windows, exact_windows)
        coverage = _list_coverage(approximate, queries, exact_windows, list_of_positive, probes)
        tried.append({"probes": probes, "refine_factor": refine_factor, "recall": recall, "coverage": coverage})
        logger.info("Probing %d of %d lists, re-scoring %d x %d candidates: window recall %.3f, %.3f of the "
                    "window in probed lists, on %d calibration rows", probes, parameters.lists, refine_factor,
                    neighbours, recall, coverage, len(calibration_rows))
        if recall >= recall_target:
            return tried

        if len(tried) > 1 and tried[-2]["refine_factor"] < refine_factor:
            refine_helps = recall - tried[-2]["recall"] >= MIN_REFINE_GAIN
        can_probe = probes < parameters.max_probes
        can_refine = refine_factor < MAX_REFINE_FACTOR and refine_helps
        ranking_loss_larger = coverage - recall > 1 - coverage
        if can_refine and (ranking_loss_larger or not can_probe):
            refine_factor *= 2
        elif can_probe:
            probes = min(2 * probes, parameters.max_probes)
        else:
            return tried


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
    recall_target: float = 0.9,
    search_on_gpu: bool = False,
    relative_margin: float | None = None,
) -> RankWindows:
    """Search every anchor over all positives and cut its rank window.

    A row's own positive and every row whose positive text equals it are never in its window:
    they are false negatives. The ``skip_top`` ranks are counted after removing them.

    Datasets above ``exact_search_max_rows`` rows use the approximate index of
    :func:`build_approximate_index`. Its probed lists (from about 1% of them) and its refine
    factor (from 2) are doubled until the windows of ``CALIBRATION_ROWS`` sampled rows reach
    ``recall_target`` against exact search, or until both reach their caps, with a warning (see
    :func:`_calibrate`). The recall reported in the result is measured afterwards on another ``recall_sample_rows``
    rows. With ``search_on_gpu`` every dataset is searched exactly on the GPUs.

    With ``relative_margin`` the windows are cut by rank first, then lose the members that score
    too close to the anchor's own positive (see :func:`drop_close_candidates`), so some windows
    are shorter than ``window_size``. The recall is measured before this filter.
    """
    start = time.perf_counter()
    rows = len(anchors)
    neighbours = _neighbour_count(positive_ids, skip_top, window_size, rows)
    stage_seconds: dict[str, float] = {}
    calibration: list[dict[str, float]] = []
    approximate = None

    if search_on_gpu:
        search, description = gpu_exact_search(positives, neighbours), "exact-gpu"
    elif rows <= exact_search_max_rows:
        search, description = exact_search(positives), "exact"
    else:
        approximate = build_approximate_index(positives, seed, show_progress_bar)
        stage_seconds["index"] = time.perf_counter() - start

        checkpoint = time.perf_counter()
        calibration_rows, recall_rows = _split_samples(rows, recall_sample_rows, seed)
        exact_calibration, _ = search_windows(exact_search(positives), anchors, calibration_rows, positive_ids,
                                              neighbours, skip_top, window_size)
        calibration = _calibrate(approximate, anchors, positives, calibration_rows, exact_calibration,
                                 positive_ids, neighbours, skip_top, window_size, recall_target)
        stage_seconds["calibration"] = time.perf_counter() - checkpoint

        search, description = approximate.search, approximate.describe()
        if calibration[-1]["recall"] < recall_target:
            logger.warning(
                "The approximate search %s reaches only %.3f window recall on the calibration rows, below "
                "recall_target=%s. Set exact_search_max_rows above %d to search exactly, which is slower "
                "but exact.", description, calibration[-1]["recall"], recall_target, rows,
            )

    checkpoint = time.perf_counter()
    indices, scores = search_windows(search, anchors, np.arange(rows), positive_ids, neighbours, skip_top,
                                     window_size, progress=f"Ranking ({description})" if show_progress_bar else None)
    stage_seconds["search"] = time.perf_counter() - checkpoint

    recall = None
    if approximate is not None:
        checkpoint = time.perf_counter()
        exact_windows, _ = search_windows(exact_search(positives), anchors, recall_rows, positive_ids, neighbours,
                                          skip_top, window_size)
        recall = window_recall(indices[recall_rows], exact_windows)
        stage_seconds["recall"] = time.perf_counter() - checkpoint
        logger.info("Approximate search %s: window recall %.3f on %d sampled rows", description, recall,
                    len(recall_rows))

    dropped = 0
    if relative_margin is not None:
        members = int((indices >= 0).sum())
        indices, scores, dropped = drop_close_candidates(indices, scores, anchors, positives, relative_margin)
        logger.info("relative_margin=%s removed %d of %d window members as likely false negatives",
                    relative_margin, dropped, members)

    short = int((indices[:, -1] < 0).sum())
    if short:
        logger.info("%d rows have fewer than %d window members", short, window_size)

    return RankWindows(indices=indices, scores=scores, search=description, recall=recall,
                       seconds=time.perf_counter() - start, calibration=calibration,
                       stage_seconds={name: round(value, 3) for name, value in stage_seconds.items()},
                       dropped_by_margin=dropped)
