"""Per-epoch batches: shuffled whole clusters, ``batch_size // cluster_size`` of them per batch."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

_MAX_SWAP_ATTEMPTS_PER_BATCH = 1000


class EpochBatcher:
    """Builds each epoch's batches from fixed clusters in vectorised numpy.

    Every row appears exactly once per epoch, except the rows of a final partial batch when
    ``drop_last`` is set. No batch contains two rows that share a text (an anchor or positive equal to
    another row's anchor or positive): clusters are swapped between batches until none does.

    Args:
        cluster_ids: Cluster id of every row. All clusters have ``cluster_size`` rows except at most
            one, which has the highest id.
        cluster_size: Rows per cluster.
        batch_size: Rows per batch, a multiple of ``cluster_size``.
        drop_last: Drop the final batch when it has fewer than ``batch_size`` rows.
        text_ids: ``(rows, 2)`` ids of anchor and positive texts, equal ids for equal texts.
    """

    def __init__(
        self,
        cluster_ids: np.ndarray,
        cluster_size: int,
        batch_size: int,
        drop_last: bool,
        text_ids: np.ndarray,
    ) -> None:
        if batch_size % cluster_size != 0:
            raise ValueError(
                f"batch_size={batch_size} is not a multiple of cluster_size={cluster_size}. "
                f"Use a batch size such as {max(cluster_size, batch_size // cluster_size * cluster_size)} "
                "or a cluster_size that divides the batch size."
            )
        rows = len(cluster_ids)
        if drop_last and rows < batch_size:
            raise ValueError(
                f"The dataset has {rows} rows, fewer than one batch of {batch_size}, and drop_last=True "
                "would drop every row. Use a smaller batch size or more data."
            )

        self.cluster_size = cluster_size
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.rows = rows
        self.clusters_per_batch = batch_size // cluster_size

        order = np.argsort(cluster_ids, kind="stable")
        full_clusters = rows // cluster_size
        self.full = order[: full_clusters * cluster_size].reshape(full_clusters, cluster_size)
        self.tail = order[full_clusters * cluster_size :]

        sizes = np.bincount(cluster_ids)
        if (sizes[:-1] != cluster_size).any() or sizes[-1] > cluster_size:
            raise ValueError(
                "The mined clusters do not all have cluster_size rows; the mined result does not "
                "match this cluster_size. Mine again with the same cluster_size."
            )

        # The second text id is dropped where it equals the first, so a row never clashes with itself.
        self.row_texts = text_ids.copy()
        self.row_texts[text_ids[:, 1] == text_ids[:, 0], 1] = -1

    def __len__(self) -> int:
        if self.drop_last:
            return self.rows // self.batch_size
        return -(-self.rows // self.batch_size)

    def epoch_batches(self, seed: int) -> list[np.ndarray]:
        """Return the batches of one epoch; the same ``seed`` always gives the same batches."""
        generator = np.random.default_rng(seed)
        cluster_order = generator.permutation(len(self.full))
        cluster_order = self._separate_duplicates(cluster_order, generator)

        rows = np.concatenate([self.full[cluster_order].reshape(-1), self.tail])
        batches = [rows[start : start + self.batch_size] for start in range(0, len(rows), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def _clashing_batches(self, cluster_order: np.ndarray) -> np.ndarray:
        rows = np.concatenate([self.full[cluster_order].reshape(-1), self.tail])
        vocabulary = int(self.row_texts.max()) + 1
        batch_index = np.repeat(np.arange(len(rows)) // self.batch_size, 2)
        text = self.row_texts[rows].reshape(-1)
        present = text >= 0
        keys = np.sort(batch_index[present] * vocabulary + text[present])
        clashes = keys[1:][keys[1:] == keys[:-1]]
        return np.unique(clashes // vocabulary)

    def _batch_texts(self, cluster_order: np.ndarray, start: int, stop: int) -> np.ndarray:
        rows = self.full[cluster_order[start:stop]].reshape(-1)
        if stop == len(cluster_order):
            rows = np.concatenate([rows, self.tail])
        texts = self.row_texts[rows].reshape(-1)
        return texts[texts >= 0]

    def _clash_count(self, cluster_order: np.ndarray, start: int, stop: int) -> int:
        texts = self._batch_texts(cluster_order, start, stop)
        return len(texts) - len(np.unique(texts))

    def _clashing_slots(self, cluster_order: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Return the slots in ``[start, stop)`` whose cluster shares a text with another one of the batch."""
        texts = self._batch_texts(cluster_order, start, stop)
        values, counts = np.unique(texts, return_counts=True)
        repeated = values[counts > 1]
        cluster_texts = self.row_texts[self.full[cluster_order[start:stop]]].reshape(stop - start, -1)
        return start + np.nonzero(np.isin(cluster_texts, repeated).any(axis=1))[0]

    def _separate_duplicates(self, cluster_order: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """Swap clusters between batches until no batch repeats a text.

        A swap is kept only when it lowers the clashes of the batch being repaired without raising
        those of the other batch, so batches repaired earlier stay clean.
        """
        per_batch = self.clusters_per_batch
        slots = len(cluster_order)
        cluster_order = cluster_order.copy()

        for batch in self._clashing_batches(cluster_order):
            start = batch * per_batch
            stop = min(start + per_batch, slots)
            clashes = self._clash_count(cluster_order, start, stop)
            for _ in range(_MAX_SWAP_ATTEMPTS_PER_BATCH):
                if clashes == 0:
                    break
                candidates = self._clashing_slots(cluster_order, start, stop)
                if len(candidates) == 0 or slots <= stop - start:
                    break
                clashing_slot = int(candidates[generator.integers(len(candidates))])
                partner_slot = int(generator.integers(slots))
                if start <= partner_slot < stop:
                    continue
                other_start = partner_slot // per_batch * per_batch
                other_stop = min(other_start + per_batch, slots)
                other_clashes = self._clash_count(cluster_order, other_start, other_stop)

                cluster_order[clashing_slot], cluster_order[partner_slot] = cluster_order[partner_slot], cluster_order[clashing_slot]
                new_clashes = self._clash_count(cluster_order, start, stop)
                if new_clashes < clashes and self._clash_count(cluster_order, other_start, other_stop) <= other_clashes:
                    clashes = new_clashes
                else:
                    cluster_order[clashing_slot], cluster_order[partner_slot] = cluster_order[partner_slot], cluster_order[clashing_slot]
            if clashes:
                raise ValueError(
                    "Could not build batches without repeated texts: too many rows share an anchor "
                    "or positive text for this batch size. Deduplicate the dataset (for example keep "
                    "one row per positive) or use a smaller batch size."
                )
        return cluster_order
