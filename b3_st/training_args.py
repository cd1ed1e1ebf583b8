"""Training arguments whose ``b3_*`` fields configure B3 batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

from sentence_transformers import SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import BatchSamplers

from b3_st.config import DEFAULT_TEACHER, B3Config
from b3_st.sampler import B3BatchSampler, B3SamplerFactory

logger = logging.getLogger(__name__)


@dataclass
class B3TrainingArguments(SentenceTransformerTrainingArguments):
    """``SentenceTransformerTrainingArguments`` that train on B3 batches.

    The ``b3_*`` fields are plain values, so a run's whole set-up is one arguments object: it is
    saved with the run, listed in the model card's hyperparameters, and parsed from the command
    line by ``HfArgumentParser``. ``batch_sampler`` is set from them; leave it at its default.

    Example::

        from b3_st import B3TrainingArguments

        args = B3TrainingArguments(
            output_dir="out",
            per_device_train_batch_size=64,
            b3_teacher="sentence-transformers/all-MiniLM-L6-v2",
            b3_skip_top=30,
            b3_window_size=100,
            b3_cluster_size=8,
        )

    With ``b3_hard_negatives=h`` (B3++) pass
    ``data_collator=B3HardNegativeCollator.for_model(model, args)`` to the trainer as well.
    """

    # Optional[...] rather than "X | None" because HfArgumentParser reads these annotations at runtime.
    b3_teacher: str = field(default=DEFAULT_TEACHER, metadata={"help": "Hub id or local folder of the teacher model."})
    b3_teacher_revision: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Branch, tag or commit of the teacher on the Hub."}
    )
    b3_query_prompt: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Text prepended to anchors before the teacher encodes them."}
    )
    b3_document_prompt: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Text prepended to positives before the teacher encodes them."}
    )
    b3_query_prompt_name: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Name of a stored teacher prompt for anchors."}
    )
    b3_document_prompt_name: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Name of a stored teacher prompt for positives."}
    )
    b3_anchor_column: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Anchor column; default: the first text column."}
    )
    b3_positive_column: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Positive column; default: the second text column."}
    )
    b3_skip_top: int = field(default=30, metadata={"help": "Top-ranked positives skipped per anchor (p)."})
    b3_window_size: int = field(default=100, metadata={"help": "Positives kept after the skipped ones (m)."})
    b3_cluster_size: int = field(default=8, metadata={"help": "Rows per cluster (K); divides the batch size."})
    b3_relative_margin: Optional[float] = field(  # noqa: UP007
        default=None,
        metadata={"help": "Drop window members scoring above the anchor's positive score minus this share "
                          "of its magnitude, e.g. 0.05; default: off."},
    )
    b3_edges: str = field(default="mutual", metadata={"help": "'mutual' or 'all' window edges."})
    b3_isolated_rows: str = field(
        default="attach", metadata={"help": "'attach' or 'random': what becomes of rows without a full cluster."}
    )
    b3_mining_seed: int = field(default=0, metadata={"help": "Seed of community detection and packing."})
    b3_community_backend: str = field(default="leiden", metadata={"help": "'leiden' or 'metis'."})
    b3_cache_dir: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Cache folder for embeddings and mined results; default $HF_HOME/b3_st."}
    )
    b3_hub_repo_id: Optional[str] = field(  # noqa: UP007
        default=None,
        metadata={"help": "Hub dataset repo 'namespace/name' to load the mined ordering from before mining."},
    )
    b3_hub_revision: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Branch or commit of b3_hub_repo_id; the branch that a push goes to."}
    )
    b3_hub_config_name: Optional[str] = field(  # noqa: UP007
        default=None, metadata={"help": "Folder of the ordering in b3_hub_repo_id; default: the matching one."}
    )
    b3_push_to_hub: bool = field(
        default=False, metadata={"help": "Push a freshly mined ordering to b3_hub_repo_id (uses hub_token)."}
    )
    b3_hub_private: Optional[bool] = field(  # noqa: UP007
        default=None, metadata={"help": "Create b3_hub_repo_id as a private repo when a push creates it."}
    )
    b3_hard_negatives: int = field(
        default=0,
        metadata={"help": "B3++: hard negatives per row drawn from the rank windows (the paper used 5); 0 for "
                          "none. Each one is one more text to encode per row. Needs B3HardNegativeCollator."},
    )
    b3_hard_negative_source: str = field(
        default="batch",
        metadata={"help": "'batch': draw from the rank windows of the whole batch; 'row': from each row's own window."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()

        sampler = self.batch_sampler
        if isinstance(sampler, B3SamplerFactory):
            return
        if sampler != BatchSamplers.BATCH_SAMPLER:
            raise ValueError(
                f"B3TrainingArguments sets batch_sampler from its b3_* fields, but batch_sampler={sampler!r} "
                "was passed. Leave batch_sampler at its default, or use SentenceTransformerTrainingArguments "
                "with batch_sampler=B3BatchSampler.bind(...)."
            )
        self.batch_sampler = B3BatchSampler.bind(
            self.b3_config(),
            hard_negatives=self.b3_hard_negatives,
            hard_negative_source=self.b3_hard_negative_source,
        )

    def b3_config(self) -> B3Config:
        """Return the :class:`B3Config` that the ``b3_*`` fields describe."""
        return B3Config(
            teacher=self.b3_teacher,
            teacher_revision=self.b3_teacher_revision,
            query_prompt=self.b3_query_prompt,
            document_prompt=self.b3_document_prompt,
            query_prompt_name=self.b3_query_prompt_name,
            document_prompt_name=self.b3_document_prompt_name,
            anchor_column=self.b3_anchor_column,
            positive_column=self.b3_positive_column,
            skip_top=self.b3_skip_top,
            window_size=self.b3_window_size,
            cluster_size=self.b3_cluster_size,
            relative_margin=self.b3_relative_margin,
            edges=self.b3_edges,
            isolated_rows=self.b3_isolated_rows,
            seed=self.b3_mining_seed,
            community_backend=self.b3_community_backend,
            cache_dir=self.b3_cache_dir,
            hub_repo_id=self.b3_hub_repo_id,
            hub_revision=self.b3_hub_revision,
            hub_config_name=self.b3_hub_config_name,
            push_to_hub=self.b3_push_to_hub,
            hub_private=self.b3_hub_private,
            # The trainer's hub_token, which TrainingArguments.to_dict already hides in saved arguments.
            hub_token=self.hub_token,
        )
