"""B3 batch mining (Breaking the Batch Barrier) for sentence-transformers training."""

from __future__ import annotations

from b3_st.config import B3Config
from b3_st.mining import MinedClusters, load_or_mine, mine, mine_from_embeddings
from b3_st.result import MinedResult, MinedResultMismatchError
from b3_st.sampler import B3BatchSampler, B3SamplerFactory
from b3_st.training_args import B3TrainingArguments

__version__ = "0.1.0"

__all__ = [
    "B3BatchSampler",
    "B3Config",
    "B3SamplerFactory",
    "B3TrainingArguments",
    "MinedClusters",
    "MinedResult",
    "MinedResultMismatchError",
    "load_or_mine",
    "mine",
    "mine_from_embeddings",
]
