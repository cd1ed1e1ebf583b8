"""Reading (anchor, positive) pairs from a dataset, with input checks and content fingerprints."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

logger = logging.getLogger(__name__)

# Columns that sentence-transformers treats as labels or routing, never as text inputs.
_NON_TEXT_COLUMNS = {"label", "labels", "score", "scores", "dataset_name"}


@dataclass
class PairData:
    """The text pairs of one dataset, with ids that make duplicate checks cheap.

    Attributes:
        anchors: Anchor text of each row.
        positives: Positive text of each row.
        anchor_column: Name of the anchor column in the source dataset.
        positive_column: Name of the positive column.
        text_ids: ``(rows, 2)`` int64 array. Equal texts get equal ids across both columns, so
            an anchor that repeats another row's positive shares its id.
        fingerprint: SHA-256 of the two columns' contents, in row order.
    """

    anchors: list[str]
    positives: list[str]
    anchor_column: str
    positive_column: str
    text_ids: np.ndarray
    fingerprint: str

    def __len__(self) -> int:
        return len(self.anchors)

    @property
    def positive_ids(self) -> np.ndarray:
        return self.text_ids[:, 1]


def resolve_columns(
    dataset: Dataset, anchor_column: str | None, positive_column: str | None
) -> tuple[str, str]:
    """Return the anchor and positive column names, defaulting to the first two text columns."""
    columns = list(dataset.column_names)
    text_columns = [column for column in columns if column not in _NON_TEXT_COLUMNS]

    for name, value in (("anchor_column", anchor_column), ("positive_column", positive_column)):
        if value is not None and value not in columns:
            raise ValueError(
                f"{name}={value!r} is not a column of the dataset, which has {columns}. "
                f"Pass one of those names as {name}."
            )

    if anchor_column is None or positive_column is None:
        if len(text_columns) < 2:
            raise ValueError(
                f"B3 needs an anchor and a positive text column, but the dataset has only {columns}. "
                "Pass anchor_column and positive_column explicitly."
            )
    anchor = anchor_column if anchor_column is not None else text_columns[0]
    remaining = [column for column in text_columns if column != anchor]
    positive = positive_column if positive_column is not None else remaining[0]

    if anchor == positive:
        raise ValueError(f"anchor_column and positive_column are both {anchor!r}: pick two different columns.")
    return anchor, positive


def _check_texts(values: list, column: str) -> list[str]:
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(
                f"Row {row} of column {column!r} is {type(value).__name__} ({value!r:.80}), not text. "
                "B3 mines text pairs: convert the column to strings or drop that row."
            )
        if not value.strip():
            raise ValueError(
                f"Row {row} of column {column!r} is empty. Drop empty rows before mining, for example "
                f"with dataset.filter(lambda row: row[{column!r}].strip() != '')."
            )
    return values


def fingerprint_texts(anchors: list[str], positives: list[str]) -> str:
    """Return a SHA-256 hex digest of the two text columns in row order."""
    digest = hashlib.sha256()
    digest.update(f"{len(anchors)}\n".encode())
    for column in (anchors, positives):
        for text in column:
            encoded = text.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
    return digest.hexdigest()


def assign_text_ids(anchors: list[str], positives: list[str]) -> np.ndarray:
    """Map every text to an integer id shared by both columns, as a ``(rows, 2)`` array."""
    vocabulary: dict[str, int] = {}
    ids = np.empty((len(anchors), 2), dtype=np.int64)
    for column_index, column in enumerate((anchors, positives)):
        for row, text in enumerate(column):
            ids[row, column_index] = vocabulary.setdefault(text, len(vocabulary))
    return ids


def read_pairs(
    dataset: Dataset, anchor_column: str | None = None, positive_column: str | None = None
) -> PairData:
    """Read and check the (anchor, positive) text pairs of ``dataset``."""
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: B3 needs at least one (anchor, positive) row per batch.")

    anchor, positive = resolve_columns(dataset, anchor_column, positive_column)
    anchors = _check_texts(list(dataset[anchor]), anchor)
    positives = _check_texts(list(dataset[positive]), positive)

    return PairData(
        anchors=anchors,
        positives=positives,
        anchor_column=anchor,
        positive_column=positive,
        text_ids=assign_text_ids(anchors, positives),
        fingerprint=fingerprint_texts(anchors, positives),
    )
