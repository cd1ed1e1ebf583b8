"""A two-panel figure of a mined result: community sizes, and batch hardness of B3 against random batches."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from b3_st.inspection import HardnessComparison, cluster_sizes, community_sizes
from b3_st.result import MinedResult

logger = logging.getLogger(__name__)


def _import_matplotlib():
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ImportError(
            "Plotting needs matplotlib, which is not installed: pip install 'b3_st[plot]'."
        ) from error
    return Figure, MaxNLocator


def _short_teacher(teacher: str) -> str:
    """Return a Hub id as is, and a long local path as its last two parts."""
    parts = Path(teacher).parts
    if len(teacher) > 40 and len(parts) > 2:
        return ".../" + "/".join(parts[-2:])
    return teacher


def build_inspection_figure(result: MinedResult, comparison: HardnessComparison):
    """Return a matplotlib ``Figure`` with the cluster-size histogram (left) and per-batch hardness (right).

    The left panel shows the sizes of the communities found before packing, which is where B3's
    clusters come from: the final clusters all have exactly K rows, so their histogram would show
    one bar. Results without community statistics show the final cluster sizes instead. The right
    panel shows the hardness of every batch of one epoch, for B3 and for random batches.

    It uses matplotlib's ``Figure`` directly, without ``pyplot``, so no GUI backend is needed.
    """
    Figure, MaxNLocator = _import_matplotlib()
    figure = Figure(figsize=(13, 5), layout="constrained")
    sizes_axis, hardness_axis = figure.subplots(1, 2)
    cluster_size = result.config.cluster_size

    histogram = community_sizes(result)
    if histogram:
        title = f"Community sizes before packing into clusters of K = {cluster_size}"
        unit = "community"
    else:
        histogram = cluster_sizes(result)
        title = f"Cluster sizes (K = {cluster_size})"
        unit = "cluster"
    sizes = np.array(list(histogram))
    counts = np.array(list(histogram.values()))
    sizes_axis.bar(sizes, counts, width=0.8, color="#4c72b0")
    sizes_axis.axvline(cluster_size, color="#c44e52", linestyle="--", label=f"K = {cluster_size}")
    if counts.max() > 50 * max(counts.min(), 1):
        sizes_axis.set_yscale("log")
    share = result.stats.get("rows_in_full_clusters_share")
    if share is not None:
        title += f"\n{100 * share:.1f}% of rows end in clusters built from window edges"
    sizes_axis.set_title(title)
    sizes_axis.set_xlabel(f"Rows per {unit}")
    sizes_axis.set_ylabel("Communities" if unit == "community" else "Clusters")
    sizes_axis.legend(loc="upper right")

    values = np.concatenate([comparison.b3, comparison.random])
    bins = np.linspace(values.min(), values.max(), 31) if values.max() > values.min() else 10
    for label, hardness, color in (("B3", comparison.b3, "#dd8452"), ("random", comparison.random, "#55a868")):
        hardness_axis.hist(hardness, bins=bins, alpha=0.6, color=color,
                           label=f"{label} batches (mean {hardness.mean():.3f})")
        hardness_axis.axvline(hardness.mean(), color=color, linestyle="--")
    hardness_axis.set_title(f"Hardness per batch, batch size {comparison.batch_size}: B3 against random\n"
                            f"one epoch, {len(comparison.b3)} batches each")
    hardness_axis.set_xlabel("Mean teacher similarity of each anchor's hardest in-batch negative")
    hardness_axis.set_ylabel("Batches")
    hardness_axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    hardness_axis.legend(loc="best")

    figure.suptitle(f"B3 mined result: {result.rows:,} rows, teacher {_short_teacher(result.config.teacher)}, "
                    f"p = {result.config.skip_top}, m = {result.config.window_size}, K = {cluster_size}")
    return figure


def plot_inspection(result: MinedResult, comparison: HardnessComparison, path: str | os.PathLike) -> Path:
    """Save the figure of :func:`build_inspection_figure` to ``path``.

    The file type follows the suffix of ``path`` (``.png``, ``.pdf``, ``.svg``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_inspection_figure(result, comparison).savefig(path, dpi=120)
    logger.info("Saved the figure to %s", path)
    return path
