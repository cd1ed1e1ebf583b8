"""The B3 mining pipeline: teacher embeddings, rank windows, graph, communities and clusters."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib import metadata as package_metadata
from typing import Any

import numpy as np
from datasets import Dataset

from b3_st.batches import EpochBatcher
from b3_st.cache import mined_dir
from b3_st.clusters import ClusterAssignment, build_clusters
from b3_st.communities import get_backend
from b3_st.config import B3Config
from b3_st.data import PairData, read_pairs
from b3_st.graph import WindowGraph, build_window_graph, directed_edges
from b3_st.ranking import RankWindows, compute_rank_windows
from b3_st.result import MinedResult
from b3_st.stats import batch_hardness, cluster_size_histogram, random_batches
from b3_st.teacher import embed_pairs

logger = logging.getLogger(__name__)

DEFAULT_STATS_BATCH_SIZE = 64
_VERSIONED_PACKAGES = ("b3_st", "sentence-transformers", "transformers", "torch", "faiss-cpu", "leidenalg",
                       "python-igraph", "numpy")


def package_versions() -> dict[str, str]:
    """Return the installed versions of the packages that shape a mined result."""
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def check_minable(rows: int, config: B3Config) -> None:
    """Raise ``ValueError`` when ``rows`` is too few for the rank window of ``config``."""
    needed = config.skip_top + config.window_size + 1
    if rows < needed:
        raise ValueError(
            f"The dataset has {rows} rows, but skip_top={config.skip_top} plus window_size="
            f"{config.window_size} needs at least {needed} (the row itself is never its own negative). "
            "Lower skip_top or window_size, or mine a larger dataset."
        )


def dataset_source(dataset: Dataset) -> dict[str, Any]:
    """Return what is known of where ``dataset`` came from (Hub id, config, split)."""
    info = getattr(dataset, "info", None)
    source: dict[str, Any] = {}
    if info is not None:
        for key in ("dataset_name", "config_name", "version"):
            value = getattr(info, key, None)
            if value is not None:
                source[key] = str(value)
    split = getattr(dataset, "split", None)
    if split is not None:
        source["split"] = str(split)
    return source


@dataclass
class MinedClusters:
    """What mining computes from teacher embeddings, before :func:`mine` wraps it in a result.

    Attributes:
        windows: Rank windows of every row.
        graph: The window graph.
        membership: Community id of every row, from the community backend.
        assignment: Final clusters of exactly ``cluster_size`` rows.
        seconds: Seconds per stage (``search``, ``graph``, ``communities``, ``clusters``,
            ``statistics``), each stage starting where the previous one ended.
        stats: Statistics of the run (see :func:`mine`), without ``seconds``.
    """

    windows: RankWindows
    graph: WindowGraph
    membership: np.ndarray
    assignment: ClusterAssignment
    seconds: dict[str, float]
    stats: dict[str, Any]


def _check_embeddings(anchors: np.ndarray, positives: np.ndarray, text_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise ValueError(
            f"anchors {anchors.shape} and positives {positives.shape} must be 2-D arrays of the same shape, "
            "one row per dataset row."
        )
    if text_ids.shape != (len(anchors), 2):
        raise ValueError(
            f"text_ids has shape {text_ids.shape}, expected ({len(anchors)}, 2): one anchor and one positive "
            "text id per row, as b3_st.data.assign_text_ids returns."
        )
    # faiss reads C-contiguous float32; this copies only when the input is anything else.
    return (np.ascontiguousarray(anchors, dtype=np.float32), np.ascontiguousarray(positives, dtype=np.float32))


def mine_from_embeddings(
    anchors: np.ndarray,
    positives: np.ndarray,
    text_ids: np.ndarray,
    config: B3Config | None = None,
    *,
    stats_batch_size: int = DEFAULT_STATS_BATCH_SIZE,
) -> MinedClusters:
    """Mine B3 clusters from teacher embeddings that are already computed.

    :func:`mine` calls this after encoding. Call it directly to mine embeddings made elsewhere, for
    example by a multi-GPU encoding job, or to measure mining without encoding.

    Args:
        anchors: ``(rows, dim)`` L2-normalised embeddings of the anchors.
        positives: ``(rows, dim)`` L2-normalised embeddings of the positives.
        text_ids: ``(rows, 2)`` ids of the anchor and positive texts, equal ids for equal texts
            across both columns (see :func:`b3_st.data.assign_text_ids`). Rows with the same
            positive id never enter each other's windows, and clusters are built to hold each id
            once.
        config: Mining settings; only the fields after encoding are used.
        stats_batch_size: Batch size at which the batch hardness statistic is measured.
    """
    config = config or B3Config()
    anchors, positives = _check_embeddings(anchors, positives, text_ids)
    check_minable(len(anchors), config)
    seconds: dict[str, float] = {}
    checkpoint = time.perf_counter()

    def finish(stage: str) -> None:
        nonlocal checkpoint
        now = time.perf_counter()
        seconds[stage] = now - checkpoint
        checkpoint = now

    windows = compute_rank_windows(
        anchors,
        positives,
        text_ids[:, 1],
        config.skip_top,
        config.window_size,
        exact_search_max_rows=config.exact_search_max_rows,
        seed=config.seed,
        show_progress_bar=config.show_progress_bar,
        recall_target=config.recall_target,
        search_on_gpu=config.search_on_gpu,
        relative_margin=config.relative_margin,
    )
    finish("search")

    graph = build_window_graph(windows.indices, windows.scores, config.edges)
    finish("graph")

    logger.info("Detecting communities with %s (max size %d)", config.community_backend, config.cluster_size)
    membership = get_backend(config.community_backend).partition(
        graph, config.cluster_size, config.seed, config.leiden_iterations
    )
    finish("communities")

    sources, targets, weights = directed_edges(windows.indices, windows.scores)
    assignment = build_clusters(
        membership, text_ids, config.cluster_size, sources, targets, weights,
        isolated_rows=config.isolated_rows, seed=config.seed, show_progress_bar=config.show_progress_bar,
    )
    del sources, targets, weights
    finish("clusters")

    stats = _statistics(anchors, positives, text_ids, graph, membership, assignment, config, windows,
                        stats_batch_size)
    finish("statistics")
    return MinedClusters(windows=windows, graph=graph, membership=membership, assignment=assignment,
                         seconds=seconds, stats=stats)


def mine(
    dataset: Dataset,
    config: B3Config | None = None,
    *,
    pairs: PairData | None = None,
    teacher_model=None,
    stats_batch_size: int = DEFAULT_STATS_BATCH_SIZE,
) -> MinedResult:
    """Mine B3 clusters for ``dataset``.

    Args:
        dataset: Dataset with an anchor and a positive text column.
        config: Mining settings; ``None`` uses the defaults of :class:`B3Config`.
        pairs: Already read pairs of ``dataset``, to skip reading them again.
        teacher_model: An already loaded SentenceTransformer to use as teacher.
        stats_batch_size: Batch size at which the batch hardness statistic is measured.

    Returns:
        The mined result. It is not saved; :func:`load_or_mine` caches it.

    Example::

        from datasets import load_dataset
        from b3_st import B3Config, mine

        dataset = load_dataset("sentence-transformers/natural-questions", split="train")
        result = mine(dataset, B3Config(teacher="sentence-transformers/all-MiniLM-L6-v2"))
        print(result.stats["rows_in_full_clusters_share"])
    """
    config = config or B3Config()
    pairs = pairs or read_pairs(dataset, config.anchor_column, config.positive_column)
    check_minable(len(pairs), config)

    embeddings = embed_pairs(pairs, config, model=teacher_model)
    mined = mine_from_embeddings(embeddings.anchors, embeddings.positives, pairs.text_ids, config,
                                 stats_batch_size=stats_batch_size)

    stats = mined.stats
    stats["seconds"] = {"encode": round(embeddings.encode_seconds, 3)}
    stats["seconds"].update({name: round(value, 3) for name, value in mined.seconds.items()})
    stats["seconds"]["mining_after_encode"] = round(sum(mined.seconds.values()), 3)
    stats["encoded"] = not embeddings.from_cache
    _log_statistics(stats)

    return MinedResult(
        cluster_ids=mined.assignment.cluster_ids,
        windows=mined.windows.indices,
        config=config,
        fingerprint=pairs.fingerprint,
        metadata={
            "teacher": config.teacher,
            "teacher_revision": config.teacher_revision,
            "anchor_column": pairs.anchor_column,
            "positive_column": pairs.positive_column,
            "source": dataset_source(dataset),
            "versions": package_versions(),
            "stats": stats,
        },
    )


def _statistics(
    anchors: np.ndarray,
    positives: np.ndarray,
    text_ids: np.ndarray,
    graph: WindowGraph,
    membership: np.ndarray,
    assignment: ClusterAssignment,
    config: B3Config,
    windows: RankWindows,
    stats_batch_size: int,
) -> dict[str, Any]:
    rows = len(anchors)
    stats: dict[str, Any] = {
        "rows": rows,
        "edges": graph.edge_count,
        "isolated_rows": int((graph.degrees() == 0).sum()),
        "search": windows.search,
        "search_recall": windows.recall,
        "search_calibration": windows.calibration,
        "community_size_histogram": cluster_size_histogram(membership),
        "rows_in_full_communities": assignment.rows_in_full_communities,
        "rows_attached": assignment.rows_attached,
        "rows_packed": assignment.rows_packed,
        "rows_moved_for_duplicates": assignment.rows_moved_for_duplicates,
        "rows_in_full_clusters_share": round(assignment.rows_in_full_clusters / rows, 4),
    }
    if config.relative_margin is not None:
        stats["window_members_dropped_by_margin"] = windows.dropped_by_margin

    batch_size = stats_batch_size - stats_batch_size % config.cluster_size or config.cluster_size
    if rows >= batch_size:
        batcher = EpochBatcher(assignment.cluster_ids, config.cluster_size, batch_size, False, text_ids)
        b3_batches = batcher.epoch_batches(seed=config.seed)
        stats["hardness_batch_size"] = batch_size
        stats["hardness_b3"] = round(batch_hardness(anchors, positives, b3_batches), 4)
        stats["hardness_random"] = round(
            batch_hardness(anchors, positives, random_batches(rows, batch_size, config.seed)),
            4,
        )
    return stats


def _log_statistics(stats: dict[str, Any]) -> None:
    logger.info(
        "B3 mining: %d rows, %d edges, %d isolated rows, %.1f%% of rows in full clusters "
        "(%d from communities, %d attached, %d packed)",
        stats["rows"], stats["edges"], stats["isolated_rows"], 100 * stats["rows_in_full_clusters_share"],
        stats["rows_in_full_communities"], stats["rows_attached"], stats["rows_packed"],
    )
    logger.info("Community sizes (size: count): %s", stats["community_size_histogram"])
    if "hardness_b3" in stats:
        logger.info("Batch hardness at batch size %d: B3 %.3f, random %.3f",
                    stats["hardness_batch_size"], stats["hardness_b3"], stats["hardness_random"])
    logger.info("Seconds per stage: %s", stats["seconds"])


def load_or_mine(
    dataset: Dataset,
    config: B3Config | None = None,
    *,
    pairs: PairData | None = None,
    teacher_model=None,
    stats_batch_size: int = DEFAULT_STATS_BATCH_SIZE,
) -> MinedResult:
    """Return the cached result for ``dataset`` and ``config``, mining and caching it when missing.

    The cache folder is keyed by the dataset fingerprint and the settings that affect the result,
    so changed data or settings mine again.
    """
    config = config or B3Config()
    pairs = pairs or read_pairs(dataset, config.anchor_column, config.positive_column)
    folder = mined_dir(config.cache_dir, pairs.fingerprint, config.settings_key())

    if folder.exists():
        try:
            result = MinedResult.load(folder)
            result.check_matches(pairs.fingerprint, len(pairs), config)
            logger.info("Reusing mined result from %s", folder)
            return result
        except (ValueError, FileNotFoundError, OSError) as error:
            logger.warning("Cached mined result in %s is unusable (%s); mining again.", folder, error)

    result = mine(dataset, config, pairs=pairs, teacher_model=teacher_model, stats_batch_size=stats_batch_size)
    result.save(folder)
    return result
