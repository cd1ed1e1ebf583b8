"""B3++ hard negatives: extra negatives per row, drawn from the mined rank windows of a batch.

B3 batches already contain mutually hard rows. B3++ adds ``h`` explicit hard negatives per row.
``MultipleNegativesRankingLoss`` and its cached variant score every extra negative against every
query of the batch. So the ``"batch"`` source draws them from one distribution for the whole
batch, with ``Pr(j)`` proportional to ``Count(j)``, the number of times row ``j`` appears in the
rank windows of the batch's rows. The ``"row"`` source draws each row's negatives uniformly from
that row's own window, as SFR-Embedding did, so the two can be compared.

A drawn row contributes its positive text. Two rows with the same positive text give the same
negative, so the batch distribution is kept per positive text (the counts of its rows summed),
which is the same distribution over texts as drawing rows by ``Count(j)``.

Rows are never drawn when their positive text equals an anchor or positive text of the batch.
That excludes the batch's own rows and the false negatives that share a positive with a batch row.

Draws are without replacement, as in the B3 authors' released code (github.com/raghavlite/B3,
``data_processing/spectral_clustering4_ibn.py``). With the ``"batch"`` source no text is drawn
twice for a batch, so no text is encoded twice in a step, unless the batch's windows contain fewer
texts than the ``batch_size * h`` draws. Then texts repeat, each at most ``ceil(draws / texts)``
times. With the ``"row"`` source each row's texts are distinct, but two rows can draw the same
text. When a batch's windows contain no allowed row at all, its negatives are drawn uniformly
from the allowed rows of the whole dataset and a warning is logged.

How the negatives reach the loss: :class:`b3_st.B3BatchSampler` appends the drawn rows' indices
after the batch rows in every batch it yields, and :class:`b3_st.B3HardNegativeCollator` moves
the positive texts of those extra rows into ``negative_1 .. negative_h`` columns before
tokenisation. The drawing runs in the sampler, in the main process, so it knows the epoch, needs
no copy of the windows in dataloader workers and adds no index column to the dataset.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

HardNegativeSource = Literal["batch", "row"]
HARD_NEGATIVE_SOURCES: tuple[str, ...] = ("batch", "row")

# Leading entropy word of the hard-negative generators, so they never share a stream with the
# generators that shuffle clusters (seeded with ``seed + epoch``).
_STREAM_TAG = 0xB3_2B2B


def check_hard_negative_settings(count: int, source: str) -> None:
    """Raise ``ValueError`` naming an invalid hard-negative count or source."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(
            f"hard_negatives={count!r} is invalid: pass the number of hard negatives per row, "
            "0 to turn them off (the B3 paper used 5)."
        )
    if source not in HARD_NEGATIVE_SOURCES:
        raise ValueError(
            f"hard_negative_source={source!r} is invalid: use 'batch' (one distribution over the "
            "rank windows of the whole batch) or 'row' (each row's own window)."
        )


@dataclass(frozen=True)
class BatchDistribution:
    """The batch distribution of hard negatives, one entry per candidate positive text.

    Attributes:
        rows: A row carrying each candidate text, the first one met in window order.
        texts: Positive text id of each candidate.
        counts: How often the candidate's rows appear in the rank windows of the batch's rows.
    """

    rows: np.ndarray
    texts: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def probabilities(self) -> np.ndarray:
        return self.counts / self.counts.sum()


def batch_texts(text_ids: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Return the sorted anchor and positive text ids of the batch's rows."""
    return np.unique(text_ids[batch])


def batch_distribution(windows: np.ndarray, text_ids: np.ndarray, batch: np.ndarray) -> BatchDistribution:
    """Count the rank-window members of the batch's rows, per positive text, without excluded rows.

    NOTE: a row ranked in the skipped top ``skip_top`` of one batch row, a likely false negative
    for it, still counts through the windows of the others. The authors' code lowers such counts,
    but the mined result stores only the windows.

    Args:
        windows: ``(rows, window_size)`` rank windows, ``-1`` where a window is short.
        text_ids: ``(rows, 2)`` anchor and positive text ids, equal ids for equal texts.
        batch: Row indices of the batch.
    """
    members = windows[batch].reshape(-1)
    members = members[members >= 0].astype(np.int64)
    texts = text_ids[members, 1]

    # Excluding the batch's texts also excludes the batch's own rows, whose positives are among them.
    allowed = ~np.isin(texts, batch_texts(text_ids, batch)) & ~np.isin(members, batch)
    members = members[allowed]
    texts = texts[allowed]

    unique_texts, first_seen, counts = np.unique(texts, return_index=True, return_counts=True)
    return BatchDistribution(rows=members[first_seen], texts=unique_texts, counts=counts)


def draw_from_distribution(
    distribution: BatchDistribution, size: int, generator: np.random.Generator
) -> np.ndarray:
    """Draw ``size`` rows without replacement by ``Pr(text) ∝ Count``, in random order.

    When the distribution has fewer texts than ``size``, every text is offered
    ``ceil(size / texts)`` times with its probability split evenly between the copies.
    """
    if size == 0:
        return np.empty(0, dtype=np.int64)
    if len(distribution) == 0:
        raise ValueError("The batch distribution is empty: there is no window member to draw from.")

    copies = math.ceil(size / len(distribution))
    rows = np.tile(distribution.rows, copies)
    probabilities = np.tile(distribution.probabilities, copies) / copies
    # Normalise again: np.random.Generator.choice rejects probabilities whose sum drifts from 1.
    probabilities = probabilities / probabilities.sum()

    drawn = generator.choice(len(rows), size=size, replace=False, p=probabilities)
    # choice() returns draws in the order they were made; shuffling keeps the likeliest texts
    # from always going to the first rows of the batch.
    return rows[generator.permutation(drawn)]


def draw_uniform_rows(
    text_ids: np.ndarray, excluded_texts: np.ndarray, size: int, generator: np.random.Generator
) -> np.ndarray:
    """Draw ``size`` rows uniformly from the rows whose positive text is not excluded.

    The fallback for batches whose windows contain no allowed row. Draws are without replacement
    while enough rows are allowed.
    """
    allowed = np.flatnonzero(~np.isin(text_ids[:, 1], excluded_texts))
    if len(allowed) == 0:
        raise ValueError(
            "Every row of the dataset shares a text with this batch, so no row can serve as a hard "
            "negative. Use more data or a smaller batch size, or turn hard negatives off."
        )
    return generator.choice(allowed, size=size, replace=size > len(allowed))


def draw_row_negatives(
    windows: np.ndarray,
    text_ids: np.ndarray,
    batch: np.ndarray,
    count: int,
    generator: np.random.Generator,
) -> np.ndarray:
    """Draw ``count`` negatives for each row uniformly from its own rank window.

    Each row's draws are without replacement and have distinct positive texts. The same exclusions
    as the batch distribution apply. Returns a ``(len(batch), count)`` array with ``-1`` in the
    slots of rows whose window has fewer than ``count`` allowed texts.
    """
    members = windows[batch].astype(np.int64)
    valid = members >= 0
    texts = text_ids[np.where(valid, members, 0), 1]
    valid &= ~np.isin(texts, batch_texts(text_ids, batch)) & ~np.isin(members, batch)

    # Keep one member per row and text, because a window can contain several rows that share a positive.
    width = members.shape[1]
    keys = np.where(valid, np.arange(len(batch))[:, None] * (int(texts.max()) + 1) + texts, -1).reshape(-1)
    _, first_seen = np.unique(keys, return_index=True)
    first = np.zeros(keys.shape, dtype=bool)
    first[first_seen] = True
    valid &= first.reshape(-1, width)

    # Random keys with invalid slots last: the first `count` slots of each row's order are a
    # uniform draw without replacement from its valid members.
    random_keys = np.where(valid, generator.random(members.shape), np.inf)
    order = np.argsort(random_keys, axis=1, kind="stable")[:, :count]
    picked = np.take_along_axis(members, order, axis=1)
    picked_valid = np.take_along_axis(valid, order, axis=1)
    return np.where(picked_valid, picked, -1)


class HardNegativeDrawer:
    """Draws the hard negatives of each batch from the mined rank windows.

    Every batch gets its own generator, seeded with ``(seed, epoch, batch_number)``, so the same
    seed and epoch always give the same negatives, whatever order batches are drawn in, and a new
    epoch draws new ones.

    Args:
        windows: ``(rows, window_size)`` rank windows of the mined result, ``-1`` padded.
        text_ids: ``(rows, 2)`` anchor and positive text ids.
        count: Hard negatives per row (``h``).
        source: ``"batch"`` or ``"row"``, see the module documentation.
        seed: Seed shared with the batch sampler.
    """

    def __init__(
        self, windows: np.ndarray, text_ids: np.ndarray, count: int, source: HardNegativeSource, seed: int
    ) -> None:
        check_hard_negative_settings(count, source)
        if len(windows) != len(text_ids):
            raise ValueError(
                f"The rank windows cover {len(windows)} rows but the dataset has {len(text_ids)}. "
                "Use the mined result of this dataset."
            )
        self.windows = windows
        self.text_ids = text_ids
        self.count = count
        self.source = source
        self.seed = seed
        self.fallback_batches = 0

    def generator(self, epoch: int, batch_number: int) -> np.random.Generator:
        """Return the generator of one batch of one epoch."""
        # SeedSequence takes only non-negative words, so the mask maps a negative seed to one.
        entropy = [_STREAM_TAG, self.seed & 0xFFFF_FFFF_FFFF_FFFF, epoch, batch_number]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def draw(self, batch: np.ndarray, epoch: int, batch_number: int) -> np.ndarray:
        """Return the ``(len(batch), count)`` hard-negative rows of one batch."""
        batch = np.asarray(batch, dtype=np.int64)
        generator = self.generator(epoch, batch_number)

        if self.source == "batch":
            distribution = batch_distribution(self.windows, self.text_ids, batch)
            drawn = self._draw_pool(distribution, len(batch) * self.count, batch, generator)
            return drawn.reshape(len(batch), self.count)

        negatives = draw_row_negatives(self.windows, self.text_ids, batch, self.count, generator)
        missing = negatives < 0
        if missing.any():
            # NOTE: a filled slot can repeat a text the same row drew from its own window.
            distribution = batch_distribution(self.windows, self.text_ids, batch)
            negatives[missing] = self._draw_pool(distribution, int(missing.sum()), batch, generator)
        return negatives

    def _draw_pool(
        self, distribution: BatchDistribution, size: int, batch: np.ndarray, generator: np.random.Generator
    ) -> np.ndarray:
        if len(distribution) > 0:
            return draw_from_distribution(distribution, size, generator)

        self.fallback_batches += 1
        if self.fallback_batches == 1:
            logger.warning(
                "The rank windows of a batch of %d rows contain no row that can serve as a hard negative, "
                "so its hard negatives are drawn uniformly from the dataset. Larger window_size or "
                "smaller skip_top settings give windows with more candidates.",
                len(batch),
            )
        return draw_uniform_rows(self.text_ids, batch_texts(self.text_ids, batch), size, generator)


class HardNegativeLabelColumns(list):
    """``valid_label_columns`` of :class:`b3_st.B3HardNegativeCollator`, tagged with its ``h``.

    ``SentenceTransformerTrainer`` hands the data collator's ``valid_label_columns`` to the batch
    sampler, the only value the two share. The tag lets :class:`b3_st.B3BatchSampler` check that
    the collator expects the hard-negative rows it appends to every batch.
    """

    def __init__(self, columns: list[str], hard_negatives: int) -> None:
        super().__init__(columns)
        self.hard_negatives = hard_negatives


def check_collator_handshake(valid_label_columns: list[str] | None, hard_negatives: int) -> None:
    """Raise ``ValueError`` when the trainer's collator does not expect ``hard_negatives`` per row.

    ``valid_label_columns=None`` means the sampler was built outside a trainer, and passes.
    """
    if valid_label_columns is None:
        return
    expected = getattr(valid_label_columns, "hard_negatives", 0)
    if expected == hard_negatives:
        return
    if hard_negatives and not expected:
        raise ValueError(
            f"B3BatchSampler appends {hard_negatives} hard-negative rows per row to every batch, but the "
            "trainer's data collator does not expect them and would train on them as extra pairs. Pass "
            "data_collator=B3HardNegativeCollator.for_model(model, args) to the trainer."
        )
    raise ValueError(
        f"The data collator expects {expected} hard negatives per row but B3BatchSampler draws "
        f"{hard_negatives}. Build the collator with B3HardNegativeCollator.for_model(model, args) so "
        "both read the same setting."
    )
