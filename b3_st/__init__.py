"""B3 batch mining (Breaking the Batch Barrier) for sentence-transformers training."""

from __future__ import annotations

from b3_st.config import B3Config
from b3_st.hub import HubPushInfo, load_mined_from_hub, push_mined
from b3_st.mining import load_or_mine, mine
from b3_st.result import MinedResult, MinedResultMismatchError
from b3_st.sampler import B3BatchSampler, B3SamplerFactory
from b3_st.training_args import B3TrainingArguments

__version__ = "0.1.0"

__all__ = [
    "B3BatchSampler",
    "B3Config",
    "B3SamplerFactory",
    "B3TrainingArguments",
    "HubPushInfo",
    "MinedResult",
    "MinedResultMismatchError",
    "load_mined_from_hub",
    "load_or_mine",
    "mine",
    "push_mined",
]
