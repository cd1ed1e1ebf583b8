"""``B3BatchSampler``: batches of mined clusters for ``SentenceTransformerTrainer``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers.base.sampler import DefaultBatchSampler

from b3_st.batches import EpochBatcher
from b3_st.config import B3Config
from b3_st.data import read_pairs
from b3_st.hard_negatives import (
    HardNegativeDrawer,
    HardNegativeSource,
    check_collator_handshake,
    check_hard_negative_settings,
)
from b3_st.hub_cache import load_or_mine_with_hub
from b3_st.mining import check_minable
from b3_st.model_card import register_with_calling_trainer
from b3_st.result import MinedResult

logger = logging.getLogger(__name__)


class B3BatchSampler(DefaultBatchSampler):
    """Batch sampler whose batches are whole B3 clusters of mutually hard negatives.

    On construction it reads the dataset's anchor and positive columns, then loads the mined
    clusters from the local cache, else from the Hub repo ``config.hub_repo_id``, else mines them
    with the teacher (see :func:`b3_st.mine`). In a distributed run only rank 0 does this. Each
    epoch shuffles the clusters with ``seed + epoch`` and puts ``batch_size // cluster_size`` of
    them in each batch, so batches differ between epochs but repeat exactly for the same seed.

    Every row appears exactly once per epoch (the final partial batch is left out when
    ``drop_last`` is set), ``len()`` is exact, and no batch contains two rows that share an anchor or
    positive text, the guarantee that ``NoDuplicatesBatchSampler`` gives.

    The trainer constructs the sampler itself with ``(dataset, batch_size, drop_last,
    valid_label_columns, generator, seed)``, so bind the B3 settings first with :meth:`bind`, or use
    :class:`b3_st.B3TrainingArguments`.

    With ``hard_negatives=h`` (B3++), every yielded batch lists the batch rows followed by ``h``
    hard-negative rows per batch row (see :mod:`b3_st.hard_negatives`), and the trainer needs
    :class:`b3_st.B3HardNegativeCollator` to turn those rows into negative columns. The sampler
    raises when the trainer's collator does not expect them.

    Args:
        dataset: Training dataset with an anchor and a positive text column.
        batch_size: Rows per batch, a multiple of ``config.cluster_size``.
        drop_last: Drop the final batch when it is smaller than ``batch_size``.
        valid_label_columns: Passed by the trainer from its data collator. B3 mines text columns
            only, so the list serves only to check that the collator expects ``hard_negatives``.
        generator: Passed by the trainer; unused, epochs are seeded by ``seed + epoch``.
        seed: Seed of the per-epoch shuffle.
        config: Mining settings. Keyword ``settings`` override single fields of it.
        mined: An already mined result for ``dataset``, checked against it and used as is.
        teacher_model: An already loaded teacher SentenceTransformer, to avoid loading it again.
        hard_negatives: Hard negatives drawn per row from the rank windows (B3++), 0 for none.
            Each one is one more text to encode per row.
        hard_negative_source: ``"batch"`` draws from the windows of the whole batch, ``"row"``
            from each row's own window.

    Example::

        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from b3_st import B3BatchSampler

        args = SentenceTransformerTrainingArguments(
            output_dir="out",
            per_device_train_batch_size=64,
            batch_sampler=B3BatchSampler.bind(teacher="sentence-transformers/all-MiniLM-L6-v2", cluster_size=8),
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss)
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        config: B3Config | None = None,
        mined: MinedResult | None = None,
        teacher_model: Any = None,
        hard_negatives: int = 0,
        hard_negative_source: HardNegativeSource = "batch",
        **settings: Any,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        config = dataclasses.replace(config or B3Config(), **settings)
        self.config = config
        self.dataset = dataset
        check_hard_negative_settings(hard_negatives, hard_negative_source)
        check_collator_handshake(valid_label_columns, hard_negatives)

        if batch_size % config.cluster_size != 0:
            raise ValueError(
                f"batch_size={batch_size} is not a multiple of cluster_size={config.cluster_size}: "
                "each batch holds whole clusters. Change the batch size or the cluster size."
            )
        pairs = read_pairs(dataset, config.anchor_column, config.positive_column)
        if len(pairs) < batch_size:
            raise ValueError(
                f"The dataset has {len(pairs)} rows, fewer than one batch of {batch_size}. "
                "Use a smaller batch size or more data."
            )
        check_minable(len(pairs), config)

        if mined is None:
            mined = load_or_mine_with_hub(dataset, config, pairs=pairs, teacher_model=teacher_model,
                                          stats_batch_size=batch_size)
        else:
            mined.check_matches(pairs.fingerprint, len(pairs), config)
        self.mined = mined
        self.batcher = EpochBatcher(mined.cluster_ids, config.cluster_size, batch_size, drop_last, pairs.text_ids)

        self.hard_negative_drawer: HardNegativeDrawer | None = None
        if hard_negatives:
            self.hard_negative_drawer = HardNegativeDrawer(
                mined.windows, pairs.text_ids, hard_negatives, hard_negative_source, seed
            )
            source = "the rank windows of the whole batch" if hard_negative_source == "batch" else "each row's window"
            logger.info("B3++: drawing %d hard negatives per row from %s", hard_negatives, source)

        # The trainer passes no model, so the sampler finds its trainer to put B3 on the model card.
        register_with_calling_trainer(self)

    @classmethod
    def bind(
        cls,
        config: B3Config | None = None,
        *,
        hard_negatives: int = 0,
        hard_negative_source: HardNegativeSource = "batch",
        **settings: Any,
    ) -> B3SamplerFactory:
        """Return a factory that the trainer calls like this class, with these settings bound.

        ``settings`` are :class:`B3Config` fields, for example ``teacher``, ``skip_top``,
        ``window_size`` or ``cluster_size``. ``hard_negatives`` and ``hard_negative_source`` turn
        on B3++ as in the constructor.
        """
        check_hard_negative_settings(hard_negatives, hard_negative_source)
        return B3SamplerFactory(
            config=dataclasses.replace(config or B3Config(), **settings),
            hard_negatives=hard_negatives,
            hard_negative_source=hard_negative_source,
        )

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Return the batches of ``epoch`` (the current epoch when ``None``) as lists of row indices."""
        epoch = self.epoch if epoch is None else epoch
        return [batch.tolist() for batch in self.batcher.epoch_batches(self.seed + epoch)]

    def epoch_hard_negatives(self, epoch: int | None = None) -> list[np.ndarray]:
        """Return the ``(rows, hard_negatives)`` hard-negative rows of every batch of ``epoch``."""
        if self.hard_negative_drawer is None:
            raise ValueError("This sampler draws no hard negatives: construct it with hard_negatives=h.")
        epoch = self.epoch if epoch is None else epoch
        return [
            self.hard_negative_drawer.draw(batch, epoch, number)
            for number, batch in enumerate(self.batcher.epoch_batches(self.seed + epoch))
        ]

    def __iter__(self) -> Iterator[list[int]]:
        if self.hard_negative_drawer is None:
            yield from self.epoch_batches()
            return

        # Batch rows first, then each row's hard negatives in row order: the layout that
        # B3HardNegativeCollator reads.
        epoch = self.epoch
        for number, batch in enumerate(self.batcher.epoch_batches(self.seed + epoch)):
            negatives = self.hard_negative_drawer.draw(batch, epoch, number)
            yield batch.tolist() + negatives.reshape(-1).tolist()

    def __len__(self) -> int:
        return len(self.batcher)


@dataclasses.dataclass(frozen=True)
class B3SamplerFactory:
    """A :class:`B3BatchSampler` with its settings bound, for the ``batch_sampler`` training argument.

    The trainer calls it with ``(dataset, batch_size, drop_last, valid_label_columns, generator,
    seed)`` for every dataset, so each dataset of a ``DatasetDict`` is mined on its own.
    """

    config: B3Config
    hard_negatives: int = 0
    hard_negative_source: HardNegativeSource = "batch"

    def __call__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> B3BatchSampler:
        return B3BatchSampler(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
            config=self.config,
            hard_negatives=self.hard_negatives,
            hard_negative_source=self.hard_negative_source,
        )

    def __repr__(self) -> str:
        defaults = B3Config()
        changed = {
            field.name: getattr(self.config, field.name)
            for field in dataclasses.fields(B3Config)
            if field.repr
            and (getattr(self.config, field.name) != getattr(defaults, field.name) or field.name == "teacher")
        }
        if self.hard_negatives:
            changed["hard_negatives"] = self.hard_negatives
            changed["hard_negative_source"] = self.hard_negative_source
        arguments = ", ".join(f"{name}={value!r}" for name, value in changed.items())
        return f"B3BatchSampler.bind({arguments})"
