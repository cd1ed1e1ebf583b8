"""``b3_config.json``: the record of each B3 sampler a model was trained with, and reading it back."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b3_st.config import B3Config

CARD_FILE = "b3_config.json"
CARD_FORMAT_VERSION = 1
PAPER_URL = "https://arxiv.org/abs/2505.11293"

# Statistics of the mined result that the record repeats.
_CARD_STATS = ("rows_in_full_clusters_share", "hardness_batch_size", "hardness_b3", "hardness_random")


@dataclass
class SamplerRecord:
    """The record that rebuilds one training dataset's B3 sampler: settings, sampler arguments, data and ordering.

    Attributes:
        config: The mining settings that change the result (:meth:`B3Config.result_settings`).
        batch_size: Rows per batch.
        drop_last: Whether the final partial batch was dropped.
        seed: Seed of the per-epoch cluster shuffle; epoch ``e`` is shuffled with ``seed + e``.
        fingerprint: SHA-256 of the anchor and positive columns of the training data, in row order.
        rows: Rows of the training data.
        anchor_column: Anchor column of the training data.
        positive_column: Positive column of the training data.
        source: What is known of where the training data came from (Hub id, config, split).
        ordering: Where the mined ordering is: ``{"location": "hub", "repo_id", "revision",
            "commit", "path_in_repo", ...}`` after a push or a Hub load, else ``{"location":
            "local", "cache_folder"}`` with the folder name under the b3_st cache's ``mined``.
        stats: Share of rows in full clusters and batch hardness of the mined result.
        hard_negatives: B3++ hard negatives drawn per row, 0 for plain B3 batches.
        hard_negative_source: ``"batch"`` or ``"row"``, where the hard negatives were drawn from.
    """

    config: dict[str, Any]
    batch_size: int
    drop_last: bool
    seed: int
    fingerprint: str
    rows: int
    anchor_column: str
    positive_column: str
    source: dict[str, Any] = field(default_factory=dict)
    ordering: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    hard_negatives: int = 0
    hard_negative_source: str = "batch"

    @classmethod
    def from_sampler(cls, sampler: Any) -> SamplerRecord:
        """Record a constructed :class:`~b3_st.B3BatchSampler`."""
        mined = sampler.mined
        drawer = getattr(sampler, "hard_negative_drawer", None)
        return cls(
            config=sampler.config.result_settings(),
            batch_size=int(sampler.batch_size),
            drop_last=bool(sampler.drop_last),
            seed=int(sampler.seed),
            fingerprint=mined.fingerprint,
            rows=mined.rows,
            anchor_column=mined.metadata.get("anchor_column") or sampler.config.anchor_column or "",
            positive_column=mined.metadata.get("positive_column") or sampler.config.positive_column or "",
            source=dict(mined.metadata.get("source") or {}),
            ordering=ordering_of(mined),
            stats={key: mined.stats[key] for key in _CARD_STATS if key in mined.stats},
            hard_negatives=drawer.count if drawer is not None else 0,
            hard_negative_source=drawer.source if drawer is not None else "batch",
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SamplerRecord:
        missing = [name for name in ("config", "batch_size", "drop_last", "seed", "fingerprint", "rows")
                   if name not in values]
        if missing:
            raise ValueError(
                f"The B3 record is missing {missing}: {CARD_FILE} is damaged or was not written by b3_st."
            )
        return cls(
            config=dict(values["config"]),
            batch_size=int(values["batch_size"]),
            drop_last=bool(values["drop_last"]),
            seed=int(values["seed"]),
            fingerprint=str(values["fingerprint"]),
            rows=int(values["rows"]),
            anchor_column=str(values.get("anchor_column") or ""),
            positive_column=str(values.get("positive_column") or ""),
            source=dict(values.get("source") or {}),
            ordering=dict(values.get("ordering") or {}),
            stats=dict(values.get("stats") or {}),
            hard_negatives=int(values.get("hard_negatives") or 0),
            hard_negative_source=str(values.get("hard_negative_source") or "batch"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "seed": self.seed,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "anchor_column": self.anchor_column,
            "positive_column": self.positive_column,
            "source": self.source,
            "ordering": self.ordering,
            "stats": self.stats,
            "hard_negatives": self.hard_negatives,
            "hard_negative_source": self.hard_negative_source,
        }

    def b3_config(self) -> B3Config:
        """Return the recorded mining settings as a :class:`B3Config`."""
        return B3Config.from_dict(self.config)

    @property
    def settings_key(self) -> str:
        return self.b3_config().settings_key()

    @property
    def on_hub(self) -> bool:
        return self.ordering.get("location") == "hub"

    def same_sampler(self, other: SamplerRecord) -> bool:
        """Return whether ``other`` records the same data, settings and sampler arguments."""
        return (self.fingerprint, self.config, self.batch_size, self.drop_last, self.seed, self.hard_negatives,
                self.hard_negative_source) == (
            other.fingerprint, other.config, other.batch_size, other.drop_last, other.seed, other.hard_negatives,
            other.hard_negative_source,
        )


def ordering_of(mined: Any) -> dict[str, Any]:
    """Return where the ordering of ``mined`` can be found: its Hub location, else its local cache folder."""
    hub = mined.metadata.get("hub")
    if hub and hub.get("repo_id"):
        return {"location": "hub", **{key: value for key, value in hub.items() if value is not None}}
    return {"location": "local", "cache_folder": f"{mined.fingerprint[:16]}-{mined.config.settings_key()}"}


def card_payload(records: list[SamplerRecord]) -> dict[str, Any]:
    """Return the JSON content of ``b3_config.json`` for ``records``."""
    from b3_st import __version__

    return {
        "format_version": CARD_FORMAT_VERSION,
        "b3_st_version": __version__,
        "paper": PAPER_URL,
        "samplers": [record.to_dict() for record in records],
    }


def write_card_file(folder: str | os.PathLike, records: list[SamplerRecord]) -> Path:
    """Write ``b3_config.json`` for ``records`` into ``folder`` through a temporary file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CARD_FILE
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{CARD_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(card_payload(records), file, indent=2, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def parse_card_file(payload: dict[str, Any], source: str) -> list[SamplerRecord]:
    """Return the sampler records of a ``b3_config.json`` payload read from ``source``."""
    version = payload.get("format_version")
    if not isinstance(version, int):
        raise ValueError(f"{source} has no format_version: it was not written by b3_st.")
    if version > CARD_FORMAT_VERSION:
        raise ValueError(
            f"{source} has format version {version}, newer than this b3_st reads ({CARD_FORMAT_VERSION}). "
            "Upgrade b3_st."
        )
    records = [SamplerRecord.from_dict(values) for values in payload.get("samplers", [])]
    if not records:
        raise ValueError(f"{source} records no B3 sampler.")
    return records


def read_card_records(
    model_id_or_path: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None
) -> list[SamplerRecord]:
    """Read the B3 sampler records of a model from its local folder or its Hub repo.

    Raises:
        FileNotFoundError: The folder or repo has no ``b3_config.json``, so the model was not
            trained on B3 batches by b3_st or was saved without a model card.
    """
    folder = Path(model_id_or_path).expanduser()
    if folder.is_dir():
        path = folder / CARD_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} has no {CARD_FILE}. It is written when a model trained with B3BatchSampler is "
                "saved with a model card; check that this is the saved model folder."
            )
        source = str(path)
    else:
        path = Path(_download_card_file(str(model_id_or_path), revision, token))
        source = f"{model_id_or_path}/{CARD_FILE}"

    with open(path, encoding="utf-8") as file:
        try:
            payload = json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source} is not valid JSON ({error}).") from error
    return parse_card_file(payload, source)


def _download_card_file(repo_id: str, revision: str | None, token: str | bool | None) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if repo_id.count("/") > 1 or repo_id.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{repo_id} is neither a local model folder nor a Hub model id ('namespace/name').")
    try:
        return hf_hub_download(repo_id, CARD_FILE, revision=revision, token=token)
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(
            f"{CARD_FILE} of the Hub model {repo_id} is not in the local Hub cache and could not be downloaded "
            "(offline mode or no connection). Connect to the Hub, or pass the local model folder."
        ) from error
    except RemoteEntryNotFoundError as error:
        raise FileNotFoundError(
            f"The Hub model {repo_id} has no {CARD_FILE} at revision {revision or 'main'}: it was not "
            "trained on B3 batches by b3_st, or was pushed without a generated model card."
        ) from error
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise FileNotFoundError(
            f"Hub model {repo_id} at revision {revision or 'main'} was not found, or it is private and "
            "no token was given. Check the id and revision, or pass token=."
        ) from error
