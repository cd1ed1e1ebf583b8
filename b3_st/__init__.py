"""B3 batch mining (Breaking the Batch Barrier) for sentence-transformers training."""

from __future__ import annotations

from b3_st.card_record import read_card_records
from b3_st.collator import B3HardNegativeCollator
from b3_st.config import B3Config
from b3_st.hub import HubPushInfo, load_mined_from_hub, push_mined
from b3_st.mining import MinedClusters, load_or_mine, mine, mine_from_embeddings
from b3_st.model_card import add_b3_to_model_card
from b3_st.reproduce import OrderingNotFoundError, load_sampler_from_model
from b3_st.result import MinedResult, MinedResultMismatchError
from b3_st.sampler import B3BatchSampler, B3SamplerFactory
from b3_st.training_args import B3TrainingArguments

__version__ = "0.1.0"

__all__ = [
    "B3BatchSampler",
    "B3Config",
    "B3HardNegativeCollator",
    "B3SamplerFactory",
    "B3TrainingArguments",
    "HubPushInfo",
    "MinedClusters",
    "MinedResult",
    "MinedResultMismatchError",
    "OrderingNotFoundError",
    "add_b3_to_model_card",
    "load_mined_from_hub",
    "load_or_mine",
    "load_sampler_from_model",
    "mine",
    "mine_from_embeddings",
    "push_mined",
    "read_card_records",
]
