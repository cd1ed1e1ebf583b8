"""Settings of one B3 mining run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

EdgePolicy = Literal["mutual", "all"]
IsolatedPolicy = Literal["attach", "random"]

DEFAULT_TEACHER = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class B3Config:
    """Settings that decide which batches B3 mines.

    Every field that changes the mined result is part of :meth:`settings_key`, so a cached result is
    reused only when all of them match. Fields that only change speed (``encode_batch_size``,
    ``device``, ``encode_devices``, ``show_progress_bar``) and where results are stored
    (``cache_dir``) are left out.

    Args:
        teacher: Hub model id or local folder of the SentenceTransformer that embeds the rows.
        teacher_revision: Branch, tag or commit of ``teacher`` on the Hub. ``None`` takes the
            default branch, which can change under you: pin a commit for reproducible batches.
        query_prompt: Text prepended to every anchor before the teacher encodes it, for teachers
            trained with instructions (for example ``"query: "`` for E5 models).
        document_prompt: Text prepended to every positive before encoding.
        query_prompt_name: Name of a prompt stored in the teacher's configuration, used for anchors
            instead of ``query_prompt``.
        document_prompt_name: Name of a stored prompt used for positives.
        anchor_column: Column with the anchors (queries). ``None`` takes the first column of the
            dataset, as sentence-transformers losses do.
        positive_column: Column with the positives. ``None`` takes the second column.
        skip_top: Number of top-ranked positives skipped for each anchor (``p`` in the B3 paper).
            These are the most likely false negatives: unlabeled positives of the same anchor.
            The paper used 30 for retrieval and 70 for visual question answering.
        window_size: Number of positives kept after the skipped ones (``m`` in the paper, 100
            there). Larger windows connect more rows, at more search and graph cost.
        cluster_size: Rows per cluster (``K`` in the paper). A batch holds ``batch_size //
            cluster_size`` clusters, so ``batch_size`` must be a multiple of it. Small clusters
            mix more topics per batch; large ones make each batch harder but narrower.
        relative_margin: Positive-aware false-negative filter beside the rank cut. A window
            member is dropped when its teacher score is above ``s - |s| * relative_margin``, where
            ``s`` is the score of the anchor with its own positive. For a positive ``s``, ``0.05``
            keeps only candidates below 95% of it, as NV-Retriever's TopK-PercPos did. The rank
            cut comes first, so ``skip_top`` still counts raw ranks, and filtered windows can hold
            fewer than ``window_size`` rows. ``skip_top`` drops a fixed number of ranks for every anchor
            whatever their scores. The margin instead adapts to each anchor: it keeps close
            negatives of anchors whose positive scores high, and drops more where the positive
            scores low. ``None`` (default) turns the filter off. The threshold is the one of
            ``relative_margin`` in sentence-transformers' ``mine_hard_negatives``.
        edges: ``"mutual"`` keeps an edge only when each row is in the other's window (the paper's
            rule, a sparse and precise graph); ``"all"`` keeps every window edge, which leaves no
            row isolated but gives a graph about 40 times denser on WordNet definitions.
        isolated_rows: What becomes of rows that end in a cluster smaller than ``cluster_size``.
            ``"attach"`` merges them with other small clusters along their strongest one-way
            window edges before packing the rest; ``"random"`` packs them in random company.
        seed: Seed of the community detection and of the packing of leftover rows.
        community_backend: ``"leiden"`` (default, ``leidenalg``) or ``"metis"`` (needs the
            ``pymetis`` extra, as the paper used).
        leiden_iterations: Leiden iterations. A negative number runs until no improvement.
        exact_search_max_rows: Largest dataset searched exactly (faiss ``IndexFlatIP``). Larger
            datasets use an approximate IVF index, whose recall against exact search is measured
            on a sample and logged. Exact search costs ``rows**2 * dim`` multiply-adds, so its
            time grows with the square of the row count; ``docs/benchmarks.md`` lists measured times.
        recall_target: Share of the exact rank window that the approximate search must find on a
            sample of rows. The number of probed IVF lists is doubled until it does or until a
            quarter of the lists is probed (see :func:`b3_st.ranking.ivf_parameters`). Higher
            targets probe more lists and search longer.
        search_on_gpu: Search exactly on every visible GPU with faiss-gpu, for any dataset size.
            Needs the ``faiss-gpu`` package and a CUDA GPU; raises ``RuntimeError`` without them.
        encode_batch_size: Batch size of the teacher's encoding.
        device: Torch device of the teacher, ``None`` lets sentence-transformers choose.
        encode_devices: Devices of a sentence-transformers multi-process pool that encodes in
            parallel, such as ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``. Each process loads its
            own copy of the teacher, so on CPU it helps only when one process leaves cores idle.
            ``None`` encodes in this process on ``device``.
        cache_dir: Folder for cached embeddings and mined results. ``None`` uses
            ``$HF_HOME/b3_st`` (by default ``~/.cache/huggingface/b3_st``).
        show_progress_bar: Show tqdm progress bars for the long steps.
        hub_repo_id: Hub dataset repo (``"namespace/name"``) used as a second cache behind the
            local one: the sampler loads a matching mined ordering from it instead of mining, which
            saves a full teacher pass over the data. ``None`` uses the local cache only.
        hub_revision: Branch or commit of ``hub_repo_id`` to load from, and the branch to push to.
            A commit pins the exact ordering; ``None`` uses ``main``.
        hub_config_name: Subfolder (and ``datasets`` config) of the ordering in the repo. ``None``
            finds the ordering that matches the dataset and settings, and names a pushed one
            after the dataset, teacher, ``p``, ``m`` and ``K``.
        push_to_hub: Push the result to ``hub_repo_id`` after mining it. A failed push logs a
            warning and training goes on with the local result.
        hub_private: Create ``hub_repo_id`` as a private repo when the push creates it. ``None``
            follows the namespace's default; an existing repo keeps its visibility.
        hub_token: Hub access token for private repos and pushes. ``None`` uses the token saved
            by ``hf auth login`` or ``HF_TOKEN``. It is left out of ``repr``, :meth:`to_dict`,
            the settings key and every saved file.
    """

    teacher: str = DEFAULT_TEACHER
    teacher_revision: str | None = None
    query_prompt: str | None = None
    document_prompt: str | None = None
    query_prompt_name: str | None = None
    document_prompt_name: str | None = None
    anchor_column: str | None = None
    positive_column: str | None = None
    skip_top: int = 30
    window_size: int = 100
    cluster_size: int = 8
    # Left out of the settings key while None, so results mined before the option existed still match.
    relative_margin: float | None = field(default=None, metadata={"omit_when_none": True})
    edges: EdgePolicy = "mutual"
    isolated_rows: IsolatedPolicy = "attach"
    seed: int = 0
    community_backend: str = "leiden"
    leiden_iterations: int = 2
    exact_search_max_rows: int = 150_000
    recall_target: float = 0.9
    search_on_gpu: bool = False
    encode_batch_size: int = 128
    device: str | None = field(default=None, metadata={"affects_result": False})
    encode_devices: list[str] | None = field(default=None, metadata={"affects_result": False})
    cache_dir: str | None = field(default=None, metadata={"affects_result": False})
    show_progress_bar: bool = field(default=True, metadata={"affects_result": False})
    hub_repo_id: str | None = field(default=None, metadata={"affects_result": False})
    hub_revision: str | None = field(default=None, metadata={"affects_result": False})
    hub_config_name: str | None = field(default=None, metadata={"affects_result": False})
    push_to_hub: bool = field(default=False, metadata={"affects_result": False})
    hub_private: bool | None = field(default=None, metadata={"affects_result": False})
    hub_token: str | bool | None = field(default=None, repr=False, metadata={"affects_result": False})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting and a valid choice."""
        if not self.teacher:
            raise ValueError("teacher is empty: pass a Hub model id or a local model folder.")
        if self.skip_top < 0:
            raise ValueError(f"skip_top={self.skip_top} is invalid: it must be 0 or more.")
        if self.window_size < 1:
            raise ValueError(f"window_size={self.window_size} is invalid: it must be 1 or more.")
        if self.cluster_size < 1:
            raise ValueError(f"cluster_size={self.cluster_size} is invalid: it must be 1 or more.")
        if self.relative_margin is not None and not 0.0 <= self.relative_margin < 1.0:
            raise ValueError(
                f"relative_margin={self.relative_margin} is invalid: use a share in [0, 1), such as 0.05 to drop "
                "candidates above 95% of the positive's score, or None to turn the filter off."
            )
        if self.edges not in ("mutual", "all"):
            raise ValueError(f"edges={self.edges!r} is invalid: use 'mutual' or 'all'.")
        if self.isolated_rows not in ("attach", "random"):
            raise ValueError(f"isolated_rows={self.isolated_rows!r} is invalid: use 'attach' or 'random'.")
        if not 0.0 < self.recall_target <= 1.0:
            raise ValueError(f"recall_target={self.recall_target} is invalid: use a share in (0, 1], such as 0.9.")
        if self.encode_devices is not None and (
            isinstance(self.encode_devices, str) or not self.encode_devices
        ):
            raise ValueError(
                f"encode_devices={self.encode_devices!r} is invalid: pass a non-empty list of torch devices, "
                "such as ['cuda:0', 'cuda:1'], or None to encode in this process."
            )
        if self.query_prompt is not None and self.query_prompt_name is not None:
            raise ValueError("Both query_prompt and query_prompt_name are set: pass only one of them.")
        if self.document_prompt is not None and self.document_prompt_name is not None:
            raise ValueError("Both document_prompt and document_prompt_name are set: pass only one of them.")
        if self.encode_batch_size < 1:
            raise ValueError(f"encode_batch_size={self.encode_batch_size} is invalid: it must be 1 or more.")
        if self.hub_repo_id is not None and self.hub_repo_id.count("/") != 1:
            raise ValueError(
                f"hub_repo_id={self.hub_repo_id!r} is invalid: use 'namespace/name', for example "
                "'my-user/b3-orderings'."
            )
        if self.push_to_hub and self.hub_repo_id is None:
            raise ValueError("push_to_hub=True needs hub_repo_id: pass the Hub dataset repo to push to.")

    def result_settings(self) -> dict[str, Any]:
        """Return the settings that change the mined result, as a JSON-ready dict."""
        settings = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.metadata.get("affects_result", True):
                continue
            if value is None and f.metadata.get("omit_when_none", False):
                continue
            settings[f.name] = value
        return settings

    def settings_key(self) -> str:
        """Return a short hash of :meth:`result_settings`, used in cache folder names."""
        payload = json.dumps(self.result_settings(), sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Return every setting as a dict, except secrets such as ``hub_token``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> B3Config:
        """Build a config from a dict, ignoring keys that this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})
