"""``B3HardNegativeCollator``: turns the hard-negative rows of B3++ batches into negative columns."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

from b3_st.data import _NON_TEXT_COLUMNS
from b3_st.hard_negatives import HardNegativeLabelColumns
from b3_st.sampler import B3SamplerFactory

logger = logging.getLogger(__name__)

NEGATIVE_COLUMN_PREFIX = "negative_"


@dataclass
class B3HardNegativeCollator(SentenceTransformerDataCollator):
    """Data collator for B3++ batches: ``h`` hard negatives per row as extra text columns.

    :class:`b3_st.B3BatchSampler` with ``hard_negatives=h`` yields the batch rows followed by ``h``
    hard-negative rows per batch row. This collator keeps the batch rows, adds the positive texts
    of their hard-negative rows as ``negative_1 .. negative_h`` columns after the existing
    columns, and tokenises as the sentence-transformers collator does.
    ``MultipleNegativesRankingLoss`` and ``CachedMultipleNegativesRankingLoss`` score every
    column after the anchor as a candidate for every anchor of the batch, so each hard negative is
    one more text to encode per row: a step encodes ``2 + h`` texts per row instead of 2.

    The negative columns use the positive column's prompt and router task unless ``prompts`` or
    ``router_mapping`` name them.

    With ``hard_negatives=0`` it behaves exactly like ``SentenceTransformerDataCollator``.

    Args:
        hard_negatives: Hard negatives per row, the sampler's ``hard_negatives``.
        positive_column: Column whose text a hard-negative row contributes. ``None`` takes the
            second text column, as B3 mining does.

    Example::

        from sentence_transformers import SentenceTransformerTrainer
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from b3_st import B3HardNegativeCollator, B3TrainingArguments

        args = B3TrainingArguments(
            output_dir="out",
            per_device_train_batch_size=64,
            b3_teacher="sentence-transformers/all-MiniLM-L6-v2",
            b3_hard_negatives=5,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            loss=MultipleNegativesRankingLoss(model),
            data_collator=B3HardNegativeCollator.for_model(model, args),
        )
    """

    hard_negatives: int = 0
    positive_column: str | None = None

    def __post_init__(self) -> None:
        if self.hard_negatives < 0:
            raise ValueError(f"hard_negatives={self.hard_negatives} is invalid: it must be 0 or more.")
        # Tag the label columns so the batch sampler, which the trainer hands this list, can check
        # that it appends the hard-negative rows this collator expects.
        self.valid_label_columns = HardNegativeLabelColumns(list(self.valid_label_columns), self.hard_negatives)
        self._positive_in_use: str | None = None

    @classmethod
    def for_model(cls, model: Any, args: Any) -> B3HardNegativeCollator:
        """Build the collator that ``SentenceTransformerTrainer`` would build, for B3++ batches.

        ``args`` are training arguments whose ``batch_sampler`` is a B3 sampler factory:
        :class:`b3_st.B3TrainingArguments`, or ``SentenceTransformerTrainingArguments`` with
        ``batch_sampler=B3BatchSampler.bind(...)``. The number of hard negatives and the positive
        column are read from that factory, so collator and sampler always agree.
        """
        factory = args.batch_sampler
        if not isinstance(factory, B3SamplerFactory):
            raise ValueError(
                f"args.batch_sampler is {factory!r}, not a B3 sampler. Use B3TrainingArguments, or pass "
                "batch_sampler=B3BatchSampler.bind(..., hard_negatives=h) to the training arguments."
            )
        return cls(
            preprocess_fn=model.preprocess,
            router_mapping=args.router_mapping,
            prompts=args.prompts,
            max_length=getattr(args, "max_length", None),
            hard_negatives=factory.hard_negatives,
            positive_column=factory.config.positive_column,
        )

    def negative_columns(self) -> list[str]:
        return [f"{NEGATIVE_COLUMN_PREFIX}{number}" for number in range(1, self.hard_negatives + 1)]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.hard_negatives or not features:
            return super().__call__(features)
        return super().__call__(self.move_negatives_to_columns(features))

    def move_negatives_to_columns(self, features: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the batch rows of ``features`` with their hard negatives as ``negative_k`` columns.

        ``features`` are the rows that the B3 sampler yields: ``B`` batch rows, then ``h`` rows
        per batch row in row order.
        """
        group = 1 + self.hard_negatives
        if len(features) % group:
            raise ValueError(
                f"The data collator received {len(features)} rows, which is not a batch plus "
                f"{self.hard_negatives} hard-negative rows per row. Use this collator only with "
                f"B3BatchSampler(hard_negatives={self.hard_negatives}), for example through "
                "B3HardNegativeCollator.for_model(model, args)."
            )
        batch_size = len(features) // group
        batch_rows = features[:batch_size]
        negative_rows = features[batch_size:]

        column_names = list(batch_rows[0])
        positive = self._resolve_positive_column(column_names)
        negative_columns = self.negative_columns()
        if clashes := sorted(set(negative_columns) & set(column_names)):
            raise ValueError(
                f"The dataset already has the column(s) {clashes}, where B3++ puts its hard negatives. "
                "Rename them, for example with dataset.rename_column(...)."
            )

        rows = []
        for index, row in enumerate(batch_rows):
            start = index * self.hard_negatives
            extended = dict(row)
            for column, negative_row in zip(negative_columns, negative_rows[start : start + self.hard_negatives]):
                extended[column] = negative_row[positive]
            rows.append(extended)
        return rows

    def _resolve_positive_column(self, column_names: list[str]) -> str:
        if self.positive_column is not None:
            if self.positive_column not in column_names:
                raise ValueError(
                    f"positive_column={self.positive_column!r} is not a column of the batch, which has "
                    f"{column_names}. Pass the name of the positive text column."
                )
            positive = self.positive_column
        else:
            excluded = _NON_TEXT_COLUMNS | set(self.valid_label_columns)
            text_columns = [name for name in column_names if name not in excluded]
            if len(text_columns) < 2:
                raise ValueError(
                    f"B3++ needs an anchor and a positive text column, but the batch has only {column_names}. "
                    "Pass positive_column explicitly."
                )
            positive = text_columns[1]
        self._positive_in_use = positive
        return positive

    def _get_prompt_for_column(self, prompts: str | dict[str, str], column_name: str) -> str | None:
        prompt = super()._get_prompt_for_column(prompts, column_name)
        if prompt is None and self._is_negative_column(column_name):
            return super()._get_prompt_for_column(prompts, self._positive_in_use)
        return prompt

    def _get_task_for_column(
        self, column_name: str, column_position: int, router_mapping: dict[str, str]
    ) -> str | None:
        task = super()._get_task_for_column(column_name, column_position, router_mapping)
        if task is None and self._is_negative_column(column_name):
            return super()._get_task_for_column(self._positive_in_use, 1, router_mapping)
        return task

    def _is_negative_column(self, column_name: str) -> bool:
        return self.hard_negatives > 0 and self._positive_in_use is not None and column_name in self.negative_columns()
