"""Loading pair data for the command line: a Hub dataset id, a parquet/json/csv file or a saved dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

logger = logging.getLogger(__name__)

# File suffixes that ``datasets`` reads, with the builder and its extra arguments.
_FILE_READERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".parquet": ("parquet", {}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
}
# Files that ``Dataset.save_to_disk`` and ``DatasetDict.save_to_disk`` write.
_SAVED_DATASET_FILES = ("state.json", "dataset_dict.json")


@dataclass
class DataSpec:
    """Location of the pairs that the command line reads.

    Attributes:
        data: Hub dataset id, local data file, or folder written by ``save_to_disk``.
        split: Split to read. ``None`` takes ``train`` when the data has one, else its only split.
        subset: Hub dataset config name (``name`` of ``load_dataset``).
        revision: Branch, tag or commit of the Hub dataset.
        rows: Keep only the first ``rows`` rows, in file order. ``None`` keeps all.
    """

    data: str
    split: str | None = None
    subset: str | None = None
    revision: str | None = None
    rows: int | None = None

    def describe(self) -> dict[str, Any]:
        """Return the spec as JSON-ready metadata, leaving out unset fields."""
        values = {"data": self.data, "split": self.split, "subset": self.subset, "revision": self.revision,
                  "rows": self.rows}
        return {key: value for key, value in values.items() if value is not None}


def _pick_split(splits: DatasetDict, split: str | None, data: str) -> Dataset:
    names = list(splits)
    if split is not None:
        if split not in splits:
            raise ValueError(f"Split {split!r} is not in {data}, which has {names}. Pass one of those to --split.")
        return splits[split]
    if "train" in splits:
        return splits["train"]
    if len(names) == 1:
        return splits[names[0]]
    raise ValueError(f"{data} has the splits {names}: choose one with --split.")


def _read_local(path: Path, spec: DataSpec) -> Dataset:
    if path.is_dir():
        if not any((path / name).exists() for name in _SAVED_DATASET_FILES):
            raise ValueError(
                f"{path} is a folder but not a dataset saved with save_to_disk (no state.json or "
                "dataset_dict.json). Pass that folder, or a .parquet, .json, .jsonl, .csv or .tsv file."
            )
        loaded = load_from_disk(str(path))
        if isinstance(loaded, DatasetDict):
            return _pick_split(loaded, spec.split, str(path))
        return loaded

    suffix = path.suffix.lower()
    if suffix not in _FILE_READERS:
        raise ValueError(
            f"{path} has the suffix {suffix or '(none)'}, which b3-st cannot read. Use a "
            f"{', '.join(sorted(_FILE_READERS))} file or a folder written by save_to_disk."
        )
    builder, options = _FILE_READERS[suffix]
    return load_dataset(builder, data_files=str(path), split="train", **options)


def _looks_like_path(data: str) -> bool:
    return data.startswith((".", "/", "~")) or Path(data).suffix.lower() in _FILE_READERS or data.count("/") > 1


def load_pairs_dataset(spec: DataSpec) -> Dataset:
    """Load the dataset that ``spec`` names.

    Raises:
        FileNotFoundError: A local path does not exist, or the Hub dataset was not found.
        ValueError: The split is unknown, the file type is unsupported, or ``rows`` is invalid.
    """
    if spec.rows is not None and spec.rows < 1:
        raise ValueError(f"rows={spec.rows} is invalid: it must be 1 or more.")

    path = Path(spec.data).expanduser()
    if path.exists():
        dataset = _read_local(path, spec)
    elif _looks_like_path(spec.data):
        raise FileNotFoundError(f"{spec.data} does not exist. Pass an existing data file or folder, or a Hub dataset id.")
    else:
        logger.info("Loading Hub dataset %s (subset %s, split %s)", spec.data, spec.subset, spec.split or "train")
        loaded = load_dataset(spec.data, spec.subset, split=spec.split, revision=spec.revision)
        dataset = _pick_split(loaded, spec.split, spec.data) if isinstance(loaded, DatasetDict) else loaded

    if spec.rows is not None and spec.rows < len(dataset):
        dataset = dataset.select(range(spec.rows))
    logger.info("Read %d rows with columns %s from %s", len(dataset), dataset.column_names, spec.data)
    return dataset
