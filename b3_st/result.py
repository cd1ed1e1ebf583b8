"""The mined result: cluster ids, rank windows and metadata, saved as parquet and json."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from b3_st.config import B3Config

logger = logging.getLogger(__name__)

CLUSTERS_FILE = "clusters.parquet"
METADATA_FILE = "b3_metadata.json"
FORMAT_VERSION = 1


class MinedResultMismatchError(ValueError):
    """A mined result does not belong to the given dataset or settings.

    Attributes:
        field: What differs: ``"rows"``, ``"contents"`` (same row count, other fingerprint) or the
            name of a :class:`B3Config` setting such as ``"teacher"`` or ``"skip_top"``.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# Symbols of the B3 paper, shown next to the setting names in mismatch errors.
_PAPER_SYMBOLS = {"skip_top": "p", "window_size": "m", "cluster_size": "K"}


@dataclass
class MinedResult:
    """Clusters and rank windows of one dataset, with the settings and statistics that made them.

    Attributes:
        cluster_ids: int64 cluster of every row; clusters have ``config.cluster_size`` rows
            except the last one.
        windows: ``(rows, window_size)`` int32 rank windows, ``-1`` where a window is short.
        config: Settings of the mining run.
        fingerprint: SHA-256 of the anchor and positive columns, in row order.
        metadata: Teacher revision, package versions, column names, source dataset and statistics.
    """

    cluster_ids: np.ndarray
    windows: np.ndarray
    config: B3Config
    fingerprint: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.cluster_ids)

    @property
    def stats(self) -> dict[str, Any]:
        return self.metadata.get("stats", {})

    def to_table(self) -> pa.Table:
        """Return the result as an Arrow table: ``row``, ``cluster`` and ``window`` columns."""
        window_length = self.windows.shape[1]
        offsets = np.arange(0, (self.rows + 1) * window_length, window_length, dtype=np.int32)
        window_column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(self.windows.reshape(-1)))
        return pa.table(
            {
                "row": pa.array(np.arange(self.rows, dtype=np.int64)),
                "cluster": pa.array(self.cluster_ids.astype(np.int64)),
                "window": window_column,
            }
        )

    def metadata_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "config": self.config.result_settings(),
            **self.metadata,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``clusters.parquet`` and ``b3_metadata.json`` into ``folder`` atomically.

        The files go to a temporary folder next to ``folder`` that is renamed into place, so a
        crash never leaves a half-written result where a later run would read it.
        """
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            pq.write_table(self.to_table(), temporary / CLUSTERS_FILE)
            with open(temporary / METADATA_FILE, "w", encoding="utf-8") as file:
                json.dump(self.metadata_json(), file, indent=2, sort_keys=True)

            if folder.exists():
                backup = folder.with_name(f".{folder.name}.old")
                shutil.rmtree(backup, ignore_errors=True)
                os.replace(folder, backup)
                os.replace(temporary, folder)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(temporary, folder)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        logger.info("Saved mined result to %s", folder)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> MinedResult:
        """Read a result written by :meth:`save`."""
        folder = Path(folder)
        metadata_path = folder / METADATA_FILE
        clusters_path = folder / CLUSTERS_FILE
        if not metadata_path.exists() or not clusters_path.exists():
            raise FileNotFoundError(
                f"{folder} has no mined result: expected {METADATA_FILE} and {CLUSTERS_FILE} there."
            )

        with open(metadata_path, encoding="utf-8") as file:
            metadata = json.load(file)
        table = pq.read_table(clusters_path)
        return cls.from_table(table, metadata)

    @classmethod
    def from_table(cls, table: pa.Table, metadata: dict[str, Any]) -> MinedResult:
        """Build a result from an Arrow table with ``row``, ``cluster``, ``window`` and its metadata json."""
        metadata = dict(metadata)
        version = metadata.pop("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(
                f"This mined result has format version {version}, newer than this b3_st reads "
                f"({FORMAT_VERSION}). Upgrade b3_st."
            )

        order = np.argsort(table.column("row").to_numpy())
        cluster_ids = table.column("cluster").to_numpy()[order].astype(np.int64)
        window_column = table.column("window").combine_chunks()
        windows = window_column.flatten().to_numpy().astype(np.int32).reshape(len(table), -1)[order]

        config = B3Config.from_dict(metadata.pop("config"))
        fingerprint = metadata.pop("fingerprint")
        metadata.pop("rows", None)
        return cls(cluster_ids=cluster_ids, windows=windows, config=config, fingerprint=fingerprint,
                   metadata=metadata)

    def check_matches(self, fingerprint: str, rows: int, config: B3Config | None = None) -> None:
        """Raise :class:`MinedResultMismatchError` naming the first field that differs."""
        if rows != self.rows:
            raise MinedResultMismatchError(
                f"The mined result has {self.rows} rows but the dataset has {rows}. It was mined on "
                "other data: mine this dataset, or load the ordering mined for it.",
                field="rows",
            )
        if fingerprint != self.fingerprint:
            raise MinedResultMismatchError(
                "The mined result was mined on other contents (fingerprint "
                f"{self.fingerprint[:12]}, dataset {fingerprint[:12]}) although the row count matches. "
                "Rows changed or were reordered: mine this dataset again.",
                field="contents",
            )
        if config is None:
            return
        expected = config.result_settings()
        found = self.config.result_settings()
        # Settings left out while at None appear on one side only, so compare over both.
        names = list(expected) + [name for name in found if name not in expected]
        for name in names:
            value = expected.get(name)
            if found.get(name) != value:
                symbol = f" ({name} is {_PAPER_SYMBOLS[name]} in the B3 paper)" if name in _PAPER_SYMBOLS else ""
                raise MinedResultMismatchError(
                    f"The mined result has {name}={found.get(name)!r} but {name}={value!r} was requested{symbol}. "
                    f"Mine again with these settings, or request {name}={found.get(name)!r}.",
                    field=name,
                )
