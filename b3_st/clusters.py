"""Turn communities into clusters of exactly ``cluster_size`` rows.

Leiden leaves many communities smaller than ``cluster_size``, and with mutual edges a large
share of rows have no edge at all. Batches are built from whole clusters, so every cluster here
gets exactly ``cluster_size`` rows (one cluster of ``rows % cluster_size`` rows excepted):

1. Communities larger than ``cluster_size`` are split, and rows that repeat a text of an earlier
   row of their community leave it, because a batch must not hold duplicates.
2. With ``isolated_rows="attach"``, small communities merge along their strongest one-way window
   edges, strongest first, while the merged size stays within ``cluster_size``.
3. The remaining small communities are packed best-fit-decreasing into clusters, kept whole
   where they fit, in seeded random order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


@dataclass
class ClusterAssignment:
    """Final clusters and how rows reached them.

    Attributes:
        cluster_ids: int64 cluster id of each row, contiguous from 0. Every cluster has exactly
            ``cluster_size`` rows except at most one, the last id, with ``rows % cluster_size``.
        rows_in_full_communities: Rows whose community from the backend already had
            ``cluster_size`` rows.
        rows_attached: Rows that reached a full cluster by merging small communities.
        rows_packed: Rows placed by packing, partly in random company.
        rows_moved_for_duplicates: Rows moved out of their community because a text repeated.
    """

    cluster_ids: np.ndarray
    rows_in_full_communities: int
    rows_attached: int
    rows_packed: int
    rows_moved_for_duplicates: int

    @property
    def rows_in_full_clusters(self) -> int:
        """Rows in a full cluster built from window edges (before packing)."""
        return self.rows_in_full_communities + self.rows_attached


def _relabel(membership: np.ndarray) -> np.ndarray:
    _, labels = np.unique(membership, return_inverse=True)
    return labels.astype(np.int64)


def _split_oversized(labels: np.ndarray, cluster_size: int) -> np.ndarray:
    """Split communities above ``cluster_size`` into consecutive chunks of it."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    position = np.arange(len(labels)) - starts
    chunked = np.empty_like(labels)
    chunked[order] = sorted_labels * (len(labels) + 1) + position // cluster_size
    return _relabel(chunked)


def _eject_duplicates(labels: np.ndarray, text_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Give every row that repeats a text of an earlier row in its community a community of its own."""
    rows = len(labels)
    vocabulary = int(text_ids.max()) + 1
    keys = np.concatenate([labels * vocabulary + text_ids[:, 0], labels * vocabulary + text_ids[:, 1]])
    owners = np.concatenate([np.arange(rows), np.arange(rows)])

    # A row whose anchor equals its own positive counts that text once.
    same_text = text_ids[:, 0] == text_ids[:, 1]
    keep = np.concatenate([np.ones(rows, dtype=bool), ~same_text])
    keys, owners = keys[keep], owners[keep]

    order = np.lexsort((owners, keys))
    keys, owners = keys[order], owners[order]
    repeated = np.zeros(len(keys), dtype=bool)
    repeated[1:] = keys[1:] == keys[:-1]
    ejected = np.unique(owners[repeated])

    labels = labels.copy()
    labels[ejected] = labels.max() + 1 + np.arange(len(ejected))
    return labels, len(ejected)


# Candidate merges checked against the community sizes in one vectorised pass, doubling from this.
_FIRST_FILTER_EDGES = 4096


class _UnionFind:
    """Union-find over communities that refuses merges above a size limit or with a shared text.

    The text set of a community is built from its rows on first use, because most communities
    are only ever rejected by the size check.
    """

    def __init__(self, sizes: np.ndarray, text_ids: np.ndarray, labels: np.ndarray) -> None:
        self.parent = list(range(len(sizes)))
        self.size = sizes.tolist()
        self.text_ids = text_ids
        self.texts: dict[int, set[int]] = {}
        self._rows_by_community = np.argsort(labels, kind="stable")
        self._community_starts = np.searchsorted(labels[self._rows_by_community], np.arange(len(sizes) + 1))

    def find(self, node: int) -> int:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def _texts_of(self, root: int) -> set[int]:
        texts = self.texts.get(root)
        if texts is None:
            rows = self._rows_by_community[self._community_starts[root] : self._community_starts[root + 1]]
            texts = set(self.text_ids[rows].reshape(-1).tolist())
            self.texts[root] = texts
        return texts

    def try_union(self, first: int, second: int, limit: int) -> bool:
        first, second = self.find(first), self.find(second)
        if first == second or self.size[first] + self.size[second] > limit:
            return False
        if not self._texts_of(first).isdisjoint(self._texts_of(second)):
            return False
        if self.size[first] < self.size[second]:
            first, second = second, first
        self.parent[second] = first
        self.size[first] += self.size[second]
        self.texts[first] |= self.texts.pop(second)
        return True

    def roots(self) -> np.ndarray:
        """Return the root of every node, by pointer jumping over the whole array at once."""
        parent = np.asarray(self.parent, dtype=np.int64)
        while True:
            grandparent = parent[parent]
            if np.array_equal(grandparent, parent):
                return parent
            parent = grandparent


def _attach_small(
    labels: np.ndarray,
    text_ids: np.ndarray,
    cluster_size: int,
    sources: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    show_progress_bar: bool,
) -> np.ndarray:
    """Merge small communities along directed window edges, strongest edge first.

    Merges happen one edge at a time in Python, but before each block of edges (blocks double in
    length) a vectorised pass drops the edges whose two communities are already one or would
    exceed ``cluster_size`` together. Sizes only grow and communities only join, so a dropped
    edge would have been refused at its turn as well, and the result equals the plain loop's.
    """
    sizes = np.bincount(labels)
    small = sizes[labels] < cluster_size

    # Edges between two different small communities, reduced to one weight per community pair.
    usable = small[sources] & small[targets] & (labels[sources] != labels[targets])
    first = labels[sources[usable]]
    second = labels[targets[usable]]
    pair_keys = np.minimum(first, second) * len(sizes) + np.maximum(first, second)
    order = np.argsort(pair_keys)
    pair_keys, pair_weights = pair_keys[order], weights[usable][order]
    if len(pair_keys):
        starts = np.flatnonzero(np.concatenate([[True], pair_keys[1:] != pair_keys[:-1]]))
        pair_weights = np.maximum.reduceat(pair_weights, starts)
        pair_keys = pair_keys[starts]

    # Pairs are in (low, high) order here, so equal weights keep that order.
    strongest_first = np.argsort(-pair_weights, kind="stable")
    low, high = np.divmod(pair_keys[strongest_first], len(sizes))

    union_find = _UnionFind(sizes, text_ids, labels)
    block_start, block_length = 0, _FIRST_FILTER_EDGES
    with tqdm(total=len(low), desc="Attaching small clusters", disable=not show_progress_bar,
              mininterval=1.0, unit="edge") as progress:
        while block_start < len(low):
            block = slice(block_start, block_start + block_length)
            roots = union_find.roots()
            root_sizes = np.asarray(union_find.size)
            low_roots, high_roots = roots[low[block]], roots[high[block]]
            feasible = (low_roots != high_roots) & (root_sizes[low_roots] + root_sizes[high_roots] <= cluster_size)
            for first_community, second_community in zip(low[block][feasible].tolist(),
                                                          high[block][feasible].tolist()):
                union_find.try_union(first_community, second_community, cluster_size)
            progress.update(len(low[block]))
            block_start += block_length
            block_length *= 2

    return _relabel(union_find.roots()[labels])


def _pack_small(labels: np.ndarray, cluster_size: int, generator: np.random.Generator) -> np.ndarray:
    """Pack communities smaller than ``cluster_size`` into full clusters, best fit decreasing."""
    sizes = np.bincount(labels)
    small_communities = np.nonzero(sizes < cluster_size)[0]
    small_communities = small_communities[generator.permutation(len(small_communities))]
    small_communities = small_communities[np.argsort(-sizes[small_communities], kind="stable")]

    # bins_by_room[r] lists open bins with r free places; best fit takes the smallest room that fits.
    bins_by_room: list[list[int]] = [[] for _ in range(cluster_size + 1)]
    bin_of_community = np.full(len(sizes), -1, dtype=np.int64)
    bin_room: list[int] = []
    for community in small_communities:
        size = int(sizes[community])
        target = next((room for room in range(size, cluster_size + 1) if bins_by_room[room]), None)
        if target is None:
            bin_room.append(cluster_size)
            chosen = len(bin_room) - 1
        else:
            chosen = bins_by_room[target].pop()
        bin_room[chosen] -= size
        bins_by_room[bin_room[chosen]].append(chosen)
        bin_of_community[community] = chosen

    packed = labels.copy()
    in_small = sizes[labels] < cluster_size
    offset = labels.max() + 1
    packed[in_small] = offset + bin_of_community[labels[in_small]]
    return _relabel(packed)


def _finalise(labels: np.ndarray, cluster_size: int, generator: np.random.Generator) -> np.ndarray:
    """Cut rows of clusters that are still short into clusters of exactly ``cluster_size``."""
    sizes = np.bincount(labels)
    short_rows = np.nonzero(sizes[labels] < cluster_size)[0]
    if len(short_rows) == 0:
        return labels

    # Keep members of one short cluster next to each other, clusters in random order.
    cluster_order = generator.permutation(len(sizes))
    rank = np.empty_like(cluster_order)
    rank[cluster_order] = np.arange(len(sizes))
    short_rows = short_rows[np.argsort(rank[labels[short_rows]], kind="stable")]

    labels = labels.copy()
    labels[short_rows] = labels.max() + 1 + np.arange(len(short_rows)) // cluster_size
    return _relabel(labels)


def _repair_duplicates(
    labels: np.ndarray, text_ids: np.ndarray, movable: np.ndarray, generator: np.random.Generator
) -> np.ndarray:
    """Swap rows between packed clusters until no cluster holds a repeated text."""
    labels = labels.copy()
    members: dict[int, list[int]] = {}
    for row in np.nonzero(movable)[0]:
        members.setdefault(int(labels[row]), []).append(int(row))
    cluster_list = list(members)

    def repeat_count(rows: list[int]) -> int:
        texts = [text for row in rows for text in set(text_ids[row].tolist())]
        return len(texts) - len(set(texts))

    for cluster in cluster_list:
        attempts = 0
        while repeat_count(members[cluster]) and attempts < 200:
            attempts += 1
            seen: set[int] = set()
            culprit = members[cluster][-1]
            for row in members[cluster]:
                row_texts = set(text_ids[row].tolist())
                if not seen.isdisjoint(row_texts):
                    culprit = row
                    break
                seen |= row_texts

            other = cluster_list[int(generator.integers(len(cluster_list)))]
            if other == cluster:
                continue
            partner = members[other][int(generator.integers(len(members[other])))]
            candidate_here = [row for row in members[cluster] if row != culprit] + [partner]
            candidate_there = [row for row in members[other] if row != partner] + [culprit]
            improves_here = repeat_count(candidate_here) < repeat_count(members[cluster])
            keeps_there = repeat_count(candidate_there) <= repeat_count(members[other])
            if improves_here and keeps_there:
                members[cluster], members[other] = candidate_here, candidate_there

    for cluster, rows in members.items():
        labels[rows] = cluster
    return labels


def build_clusters(
    membership: np.ndarray,
    text_ids: np.ndarray,
    cluster_size: int,
    directed_sources: np.ndarray,
    directed_targets: np.ndarray,
    directed_weights: np.ndarray,
    isolated_rows: str = "attach",
    seed: int = 0,
    show_progress_bar: bool = True,
) -> ClusterAssignment:
    """Turn a community membership into clusters of exactly ``cluster_size`` rows (see module doc)."""
    generator = np.random.default_rng(seed)

    labels = _split_oversized(_relabel(membership), cluster_size)
    labels, moved = _eject_duplicates(labels, text_ids)
    labels = _split_oversized(labels, cluster_size)

    in_full_community = np.bincount(labels)[labels] == cluster_size
    rows_in_full_communities = int(in_full_community.sum())

    if isolated_rows == "attach":
        labels = _attach_small(labels, text_ids, cluster_size, directed_sources, directed_targets,
                               directed_weights, show_progress_bar)
    in_full_cluster = np.bincount(labels)[labels] == cluster_size
    rows_attached = int(in_full_cluster.sum()) - rows_in_full_communities

    packed_rows = ~in_full_cluster
    labels = _pack_small(labels, cluster_size, generator)
    labels = _finalise(labels, cluster_size, generator)
    labels = _repair_duplicates(labels, text_ids, packed_rows, generator)

    # Order ids so that the one short cluster, if any, comes last.
    sizes = np.bincount(labels)
    order = np.argsort(sizes != cluster_size, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = rank[labels]

    return ClusterAssignment(
        cluster_ids=labels,
        rows_in_full_communities=rows_in_full_communities,
        rows_attached=rows_attached,
        rows_packed=int(packed_rows.sum()),
        rows_moved_for_duplicates=moved,
    )
