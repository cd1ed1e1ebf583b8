"""``B3BatchSampler``: batches of mined clusters for ``SentenceTransformerTrainer``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import torch
from datasets import Dataset
from sentence_transformers.base.sampler import DefaultBatchSampler

from b3_st.batches import EpochBatcher
from b3_st.config import B3Config
from b3_st.data import read_pairs
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

    Args:
        dataset: Training dataset with an anchor and a positive text column.
        batch_size: Rows per batch, a multiple of ``config.cluster_size``.
        drop_last: Drop the final batch when it is smaller than ``batch_size``.
        valid_label_columns: Passed by the trainer; unused, B3 mines text columns only.
        generator: Passed by the trainer; unused, epochs are seeded by ``seed + epoch``.
        seed: Seed of the per-epoch shuffle.
        config: Mining settings. Keyword ``settings`` override single fields of it.
        mined: An already mined result for ``dataset``, checked against it and used as is.
        teacher_model: An already loaded teacher SentenceTransformer, to avoid loading it again.

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

        # The trainer passes no model, so the sampler finds its trainer to put B3 on the model card.
        register_with_calling_trainer(self)

    @classmethod
    def bind(cls, config: B3Config | None = None, **settings: Any) -> B3SamplerFactory:
        """Return a factory that the trainer calls like this class, with these settings bound.

        ``settings`` are :class:`B3Config` fields, for example ``teacher``, ``skip_top``,
        ``window_size`` or ``cluster_size``.
        """
        return B3SamplerFactory(config=dataclasses.replace(config or B3Config(), **settings))

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Return the batches of ``epoch`` (the current epoch when ``None``) as lists of row indices."""
        epoch = self.epoch if epoch is None else epoch
        return [batch.tolist() for batch in self.batcher.epoch_batches(self.seed + epoch)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches()

    def __len__(self) -> int:
        return len(self.batcher)


@dataclasses.dataclass(frozen=True)
class B3SamplerFactory:
    """A :class:`B3BatchSampler` with its settings bound, for the ``batch_sampler`` training argument.

    The trainer calls it with ``(dataset, batch_size, drop_last, valid_label_columns, generator,
    seed)`` for every dataset, so each dataset of a ``DatasetDict`` is mined on its own.
    """

    config: B3Config

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
        )

    def __repr__(self) -> str:
        defaults = B3Config()
        changed = {
            field.name: getattr(self.config, field.name)
            for field in dataclasses.fields(B3Config)
            if field.repr
            and (getattr(self.config, field.name) != getattr(defaults, field.name) or field.name == "teacher")
        }
        arguments = ", ".join(f"{name}={value!r}" for name, value in changed.items())
        return f"B3BatchSampler.bind({arguments})"
