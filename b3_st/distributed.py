"""Rank checks and barriers, so that one process of a distributed run mines while the others wait."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def _process_group_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def process_rank() -> int:
    """Return this process's global rank, 0 when no ``torch.distributed`` process group is initialised."""
    return torch.distributed.get_rank() if _process_group_ready() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if _process_group_ready() else 1


def is_main_process() -> bool:
    return process_rank() == 0


def wait_for_everyone() -> None:
    """Block until every process of the group arrives here; return at once without a process group.

    The wait is ``torch.distributed.barrier``, which gives up after the process group's timeout
    (``ddp_timeout`` in the trainer, 30 minutes by default).
    """
    if world_size() > 1:
        logger.debug("Rank %d waiting at the barrier", process_rank())
        torch.distributed.barrier()
