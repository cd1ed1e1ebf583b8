"""Teacher embeddings of anchors and positives, cached on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from b3_st.cache import embeddings_dir
from b3_st.config import B3Config
from b3_st.data import PairData

logger = logging.getLogger(__name__)


@dataclass
class TeacherEmbeddings:
    """L2-normalised float32 teacher embeddings of one dataset.

    Attributes:
        anchors: ``(rows, dim)`` embeddings of the anchors.
        positives: ``(rows, dim)`` embeddings of the positives.
        encode_seconds: Time spent encoding; 0.0 when both came from the cache.
        from_cache: Whether both matrices were read from the cache.
    """

    anchors: np.ndarray
    positives: np.ndarray
    encode_seconds: float = 0.0
    from_cache: bool = False


def _embedding_key(config: B3Config, role: str, texts_digest: str) -> str:
    if role == "anchor":
        prompt, prompt_name = config.query_prompt, config.query_prompt_name
    else:
        prompt, prompt_name = config.document_prompt, config.document_prompt_name

    payload = {
        "teacher": config.teacher,
        "revision": config.teacher_revision,
        "prompt": prompt,
        "prompt_name": prompt_name,
        "texts": texts_digest,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def _digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, array)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_teacher(config: B3Config):
    """Load the teacher as a SentenceTransformer from a Hub id or local folder."""
    from sentence_transformers import SentenceTransformer

    logger.info("Loading teacher %s (revision %s)", config.teacher, config.teacher_revision or "default")
    return SentenceTransformer(config.teacher, revision=config.teacher_revision, device=config.device)


def encode_texts(model, texts: list[str], config: B3Config, role: str, pool: dict | None = None) -> np.ndarray:
    """Encode the distinct texts once and return L2-normalised float32 rows for every input.

    ``pool`` is a sentence-transformers multi-process pool (``model.start_multi_process_pool``)
    that splits the texts over its processes; ``None`` encodes in this process.
    """
    unique_texts, inverse = np.unique(np.array(texts, dtype=object), return_inverse=True)

    if role == "anchor":
        prompt, prompt_name = config.query_prompt, config.query_prompt_name
    else:
        prompt, prompt_name = config.document_prompt, config.document_prompt_name

    logger.info("Encoding %d distinct %s texts of %d rows", len(unique_texts), role, len(texts))
    embeddings = model.encode(
        list(unique_texts),
        prompt=prompt,
        prompt_name=prompt_name,
        batch_size=config.encode_batch_size,
        show_progress_bar=config.show_progress_bar,
        convert_to_numpy=True,
        normalize_embeddings=True,
        pool=pool,
    )
    return np.ascontiguousarray(embeddings[inverse], dtype=np.float32)


def embed_pairs(pairs: PairData, config: B3Config, model=None) -> TeacherEmbeddings:
    """Return teacher embeddings of ``pairs``, reading or filling the on-disk cache.

    The cache key covers the teacher id, revision, prompt and the exact texts of the column, so a
    changed column or prompt is encoded again while a second run on the same data is not.
    Pass ``model`` to reuse an already loaded teacher. With ``config.encode_devices`` one
    multi-process pool encodes both columns; its start-up time counts as encoding time.
    """
    folder = embeddings_dir(config.cache_dir)
    results: dict[str, np.ndarray] = {}
    encode_seconds = 0.0
    from_cache = True
    pool = None

    try:
        for role, texts in (("anchor", pairs.anchors), ("positive", pairs.positives)):
            key = _embedding_key(config, role, _digest(texts))
            path = folder / f"{key}.npy"

            if path.exists():
                logger.info("Reusing cached %s embeddings from %s", role, path)
                results[role] = np.load(path)
                continue

            if model is None:
                model = load_teacher(config)
            start = time.perf_counter()
            if config.encode_devices and pool is None:
                logger.info("Starting a multi-process encoding pool on %s", config.encode_devices)
                pool = model.start_multi_process_pool(target_devices=list(config.encode_devices))
            results[role] = encode_texts(model, texts, config, role, pool=pool)
            encode_seconds += time.perf_counter() - start
            from_cache = False
            _save_atomic(path, results[role])
    finally:
        if pool is not None:
            model.stop_multi_process_pool(pool)

    return TeacherEmbeddings(
        anchors=results["anchor"],
        positives=results["positive"],
        encode_seconds=encode_seconds,
        from_cache=from_cache,
    )
