"""Lookup order of the sampler's mined result: the local cache, then a Hub repo, then mining.

In a distributed run only rank 0 reads, downloads, mines and pushes. The other ranks wait at a
barrier and then read rank 0's result from the local cache.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset

from b3_st.cache import mined_dir
from b3_st.config import B3Config
from b3_st.data import PairData, read_pairs
from b3_st.distributed import is_main_process, process_rank, wait_for_everyone, world_size
from b3_st.hub import (
    HubUnavailableError,
    MinedResultNotFoundError,
    hub_dataset_source,
    hub_offline,
    load_mined_from_hub,
    push_mined,
)
from b3_st.mining import DEFAULT_STATS_BATCH_SIZE, mine
from b3_st.result import MinedResult, MinedResultMismatchError

logger = logging.getLogger(__name__)


def load_or_mine_with_hub(
    dataset: Dataset,
    config: B3Config | None = None,
    *,
    pairs: PairData | None = None,
    teacher_model=None,
    stats_batch_size: int = DEFAULT_STATS_BATCH_SIZE,
) -> MinedResult:
    """Return the mined result for ``dataset``: from the local cache, else ``config.hub_repo_id``, else mined.

    A result found on the Hub or mined here is saved to the local cache, so the next run reads it
    locally. With ``config.push_to_hub`` a mined result is pushed too. The Hub is optional: with
    ``HF_HUB_OFFLINE`` set, an unreachable Hub or a failed push, a warning is logged and the local
    result is used.

    Raises:
        MinedResultMismatchError: ``config.hub_config_name`` names an ordering that does not fit
            the dataset or settings. Without a config name a mismatching Hub ordering is skipped.
        RuntimeError: On a rank other than 0, when rank 0 left no result in the local cache.
    """
    config = config or B3Config()
    pairs = pairs or read_pairs(dataset, config.anchor_column, config.positive_column)
    folder = mined_dir(config.cache_dir, pairs.fingerprint, config.settings_key())

    if world_size() == 1:
        return _load_or_mine(dataset, config, pairs, folder, teacher_model, stats_batch_size)

    if is_main_process():
        try:
            return _load_or_mine(dataset, config, pairs, folder, teacher_model, stats_batch_size)
        finally:
            # Release the other ranks on failure too, so they stop with an error instead of waiting
            # for the barrier's timeout.
            wait_for_everyone()

    wait_for_everyone()
    return _read_after_main_process(config, pairs, folder)


def _load_or_mine(dataset: Dataset, config: B3Config, pairs: PairData, folder: Path, teacher_model,
                  stats_batch_size: int) -> MinedResult:
    local = _load_local(folder, pairs, config)
    if local is not None:
        pushed_to = local.metadata.get("hub", {}).get("repo_id")
        if config.push_to_hub and pushed_to != config.hub_repo_id:
            _push(local, config, folder)
        return local

    if config.hub_repo_id is not None:
        fetched = _load_from_hub(config, pairs)
        if fetched is not None:
            fetched.save(folder)
            return fetched

    result = mine(dataset, config, pairs=pairs, teacher_model=teacher_model, stats_batch_size=stats_batch_size)
    result.metadata.setdefault("source", {}).update(hub_dataset_source(dataset))
    result.save(folder)
    if config.push_to_hub:
        _push(result, config, folder)
    return result


def _load_local(folder: Path, pairs: PairData, config: B3Config) -> MinedResult | None:
    if not folder.exists():
        return None
    try:
        result = MinedResult.load(folder)
        result.check_matches(pairs.fingerprint, len(pairs), config)
    except (ValueError, FileNotFoundError, OSError) as error:
        logger.warning("Cached mined result in %s is unusable (%s); ignoring it.", folder, error)
        return None
    logger.info("Reusing mined result from %s", folder)
    return result


def _load_from_hub(config: B3Config, pairs: PairData) -> MinedResult | None:
    """Return the matching ordering of ``config.hub_repo_id``, or ``None`` after logging why there is none."""
    repo_id = config.hub_repo_id
    try:
        return load_mined_from_hub(
            repo_id,
            config=config,
            fingerprint=pairs.fingerprint,
            rows=len(pairs),
            revision=config.hub_revision,
            token=config.hub_token,
            config_name=config.hub_config_name,
        )
    except HubUnavailableError as error:
        logger.warning("%s Mining locally instead.", error)
    except MinedResultNotFoundError as error:
        logger.info("%s Mining locally.", error)
    except MinedResultMismatchError as error:
        if config.hub_config_name is not None:
            raise
        logger.warning("%s Mining locally.", error)
    except OSError as error:
        # Other Hub errors, such as an invalid token (HTTP 401). huggingface_hub's errors are OSErrors.
        logger.warning("Loading a B3 ordering from %s failed (%s: %s). Mining locally.", repo_id,
                       type(error).__name__, error)
    return None


def _push(result: MinedResult, config: B3Config, folder: Path) -> None:
    """Push ``result`` and record the Hub source in the local copy; a failure only logs a warning."""
    try:
        push_mined(
            result,
            config.hub_repo_id,
            revision=config.hub_revision,
            private=config.hub_private,
            token=config.hub_token,
            config_name=config.hub_config_name,
        )
    except (OSError, ValueError) as error:
        logger.warning(
            "Pushing the mined result to %s failed (%s: %s). Training goes on with the local result in %s; "
            "push it later with b3_st.hub.push_mined.",
            config.hub_repo_id, type(error).__name__, error, folder,
        )
        return
    result.save(folder)


def _read_after_main_process(config: B3Config, pairs: PairData, folder: Path) -> MinedResult:
    result = _load_local(folder, pairs, config)
    if result is not None:
        return result

    # Ranks on another machine do not see rank 0's cache folder unless it is shared, so they load
    # the pushed ordering from the Hub. They keep it in memory because several ranks saving the
    # same folder at once could collide.
    if config.hub_repo_id is not None and not hub_offline():
        fetched = _load_from_hub(config, pairs)
        if fetched is not None:
            return fetched

    raise RuntimeError(
        f"Rank {process_rank()} found no mined result in {folder} after rank 0 finished. Either rank 0 failed "
        "(see its log) or this process cannot read rank 0's cache folder: set cache_dir to a folder that every "
        "machine shares, or set hub_repo_id with push_to_hub=True so that the other machines download it."
    )
