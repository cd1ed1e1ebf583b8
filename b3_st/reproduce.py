"""Rebuild the exact B3 sampler of a trained model from the ``b3_config.json`` in its folder or repo."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from datasets import Dataset

from b3_st.cache import mined_dir
from b3_st.config import B3Config
from b3_st.data import PairData, read_pairs
from b3_st.mining import load_or_mine
from b3_st.card_record import CARD_FILE, SamplerRecord, read_card_records
from b3_st.result import MinedResult, MinedResultMismatchError
from b3_st.sampler import B3BatchSampler

logger = logging.getLogger(__name__)


class OrderingNotFoundError(FileNotFoundError):
    """The mined ordering that a model was trained on is in neither the local cache nor the Hub."""


def select_record(records: list[SamplerRecord], dataset: Dataset) -> tuple[SamplerRecord, PairData]:
    """Return the record whose training data equals ``dataset``, with the pairs read from it.

    Raises:
        MinedResultMismatchError: No record matches. The message gives the recorded and the given
            row counts and fingerprints, and whether the row count or the contents differ.
    """
    pairs_by_columns: dict[tuple[str | None, str | None], PairData] = {}
    for record in records:
        columns = (record.anchor_column or None, record.positive_column or None)
        if columns not in pairs_by_columns:
            pairs_by_columns[columns] = read_pairs(dataset, *columns)
        pairs = pairs_by_columns[columns]
        if pairs.fingerprint == record.fingerprint and len(pairs) == record.rows:
            return record, pairs

    pairs = next(iter(pairs_by_columns.values()))
    recorded = "; ".join(
        f"{record.rows} rows with fingerprint {record.fingerprint[:12]}"
        + (f" from {record.source['dataset_name']}" if record.source.get("dataset_name") else "")
        for record in records
    )
    if any(record.rows == len(pairs) for record in records):
        reason = "The row count matches but the contents differ: rows were changed or reordered."
    else:
        reason = "The row count differs."
    raise MinedResultMismatchError(
        f"The dataset ({len(pairs)} rows, fingerprint {pairs.fingerprint[:12]}) is not the data the model's "
        f"B3 batches were built from ({recorded}). {reason} Pass the training rows in their training order."
    )


def _load_given(mined: MinedResult | str | os.PathLike, record: SamplerRecord, config: B3Config) -> MinedResult:
    result = mined if isinstance(mined, MinedResult) else MinedResult.load(mined)
    result.check_matches(record.fingerprint, record.rows, config)
    return result


def _load_cached(record: SamplerRecord, config: B3Config) -> MinedResult | None:
    folder = mined_dir(config.cache_dir, record.fingerprint, config.settings_key())
    if not folder.exists():
        return None
    result = MinedResult.load(folder)
    result.check_matches(record.fingerprint, record.rows, config)
    logger.info("Loaded the mined ordering from the local cache %s", folder)
    return result


def _load_from_hub(record: SamplerRecord, config: B3Config, token: str | bool | None) -> MinedResult:
    from b3_st.hub import load_mined_from_hub

    ordering = record.ordering
    return load_mined_from_hub(
        ordering["repo_id"],
        config=config,
        fingerprint=record.fingerprint,
        rows=record.rows,
        revision=ordering.get("commit") or ordering.get("revision"),
        token=token,
        config_name=ordering.get("config_name"),
    )


def load_ordering(
    record: SamplerRecord,
    config: B3Config,
    *,
    dataset: Dataset,
    pairs: PairData,
    mined: MinedResult | str | os.PathLike | None = None,
    allow_mining: bool = False,
    token: str | bool | None = None,
    teacher_model: Any = None,
) -> MinedResult:
    """Return the mined ordering of ``record``: the given one, the local cache's, the Hub's, or a new one.

    Raises:
        OrderingNotFoundError: The ordering is in none of these places and ``allow_mining`` is off.
        MinedResultMismatchError: A found ordering belongs to other data or settings.
    """
    if mined is not None:
        return _load_given(mined, record, config)

    cached = _load_cached(record, config)
    if cached is not None:
        return cached

    searched = [f"the local cache {mined_dir(config.cache_dir, record.fingerprint, config.settings_key())}"]
    if record.on_hub:
        repo_id = record.ordering["repo_id"]
        searched.append(f"the Hub dataset {repo_id}")
        try:
            return _load_from_hub(record, config, token)
        except MinedResultMismatchError:
            raise
        except ImportError as error:
            hub_failure = f"b3_st.hub is not available ({error})"
        # Any other failure (offline mode, network, missing file or revision) means that the Hub
        # copy is unusable now. Mining again, or the error below, follows.
        except Exception as error:  # noqa: BLE001
            hub_failure = f"loading from the Hub dataset {repo_id} failed ({type(error).__name__}: {error})"
        logger.warning("The mined ordering could not be loaded from the Hub: %s", hub_failure)

    if allow_mining:
        logger.warning(
            "Mining the ordering again with teacher %s, because it is not in %s. The batches equal the "
            "original ones only when the teacher weights and package versions are the same.",
            config.teacher, " or ".join(searched),
        )
        return load_or_mine(dataset, config, pairs=pairs, teacher_model=teacher_model,
                            stats_batch_size=record.batch_size)

    raise OrderingNotFoundError(
        f"The mined ordering of this model is not in {' or '.join(searched)}. Pass mined= with the mined "
        "folder (for example the output of `b3-st mine`), push the ordering to the Hub where it was "
        "mined, or pass allow_mining=True to mine it again with the recorded teacher."
    )


def load_sampler_from_model(
    model_id_or_path: str | os.PathLike,
    dataset: Dataset,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    mined: MinedResult | str | os.PathLike | None = None,
    allow_mining: bool = False,
    teacher_model: Any = None,
    show_progress_bar: bool = True,
) -> B3BatchSampler:
    """Rebuild the B3 sampler that a model was trained with, from the model's ``b3_config.json``.

    The sampler gets the recorded batch size, ``drop_last`` and shuffle seed, and the mined
    ordering it was trained on, so ``sampler.epoch_batches(epoch)`` returns the training batches
    of every epoch. The ordering comes from ``mined`` when given, else from the local cache, else
    from the Hub dataset it was pushed to or loaded from. It is never mined again unless
    ``allow_mining`` is set, because a new mining run matches the original only with the same
    teacher weights and package versions.

    Args:
        model_id_or_path: Local folder of the saved model, or its Hub model id.
        dataset: The training data: the same rows in the same order. For a model trained on a
            ``DatasetDict``, pass the one dataset whose sampler you want.
        revision: Branch, tag or commit of the Hub model.
        token: Hub token for a private model or ordering repo.
        cache_dir: b3_st cache folder to look in; ``None`` uses the default cache.
        mined: A mined result, or the folder of one, to use instead of the cache and the Hub.
        allow_mining: Mine the ordering again with the recorded settings when it is not found.
        teacher_model: An already loaded teacher, used only when mining again.
        show_progress_bar: Show progress bars when mining again.

    Raises:
        FileNotFoundError: The model has no ``b3_config.json``.
        MinedResultMismatchError: ``dataset`` is not the training data, or a found ordering
            belongs to other data or settings.
        OrderingNotFoundError: The ordering was not found and ``allow_mining`` is off.

    Example::

        from datasets import load_dataset
        from b3_st import load_sampler_from_model

        train_dataset = load_dataset("sentence-transformers/natural-questions", split="train")
        sampler = load_sampler_from_model("my-user/my-b3-model", train_dataset)
        first_batch = sampler.epoch_batches(0)[0]
    """
    records = read_card_records(model_id_or_path, revision=revision, token=token)
    record, pairs = select_record(records, dataset)

    config = record.b3_config()
    config.cache_dir = str(Path(cache_dir).expanduser()) if cache_dir is not None else None
    config.show_progress_bar = show_progress_bar

    result = load_ordering(record, config, dataset=dataset, pairs=pairs, mined=mined,
                           allow_mining=allow_mining, token=token, teacher_model=teacher_model)
    logger.info("Rebuilt the B3 sampler of %s from its %s", model_id_or_path, CARD_FILE)
    return B3BatchSampler(dataset, batch_size=record.batch_size, drop_last=record.drop_last,
                          seed=record.seed, config=config, mined=result, hard_negatives=record.hard_negatives,
                          hard_negative_source=record.hard_negative_source)
