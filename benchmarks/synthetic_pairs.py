"""Synthetic teacher embeddings of (anchor, positive) pairs, for mining benchmarks beyond real data.

Rows come from a two-level Gaussian mixture on the unit sphere: topics, subtopics around them and
a latent point per row around its subtopic. Anchor and positive are two noisy views of that latent
point, both pulled towards one shared direction, as real sentence embeddings share a mean. Some
positives repeat another row's positive of the same subtopic, with the same text id and embedding,
as WordNet words repeat across senses.

The default noise levels were chosen so that, at 100,000 rows of 384 dimensions, an anchor's
similarity to the positives at ranks 1, 30 and 130 (about 0.54, 0.45 and 0.40) and the median
similarity (about 0.05) come close to those of all-MiniLM-L6-v2 on WordNet definition_words_train
(0.66, 0.47, 0.39 and 0.07). The share of repeated positives (12%) matches that file too.

NOTE: the mixture is easier for an IVF index than WordNet is: at 300,000 rows, probing 17 of 2,191
lists (0.8%) already finds 95% of the exact rank window, while WordNet's 111,852 rows need 160 of
1,338 lists (12%) for 93%. Search times measured on these embeddings are therefore lower bounds for real data.
"""

from __future__ import annotations

import numpy as np

ROWS_PER_TOPIC = 1000
ROWS_PER_SUBTOPIC = 50
SUBTOPIC_SPREAD = 0.6
LATENT_SPREAD = 0.4
VIEW_NOISE = 1.0
SHARED_DIRECTION_WEIGHT = 0.3
REPEATED_POSITIVE_SHARE = 0.12
_CHUNK_ROWS = 65536


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _noise(generator: np.random.Generator, rows: int, dim: int, scale: float) -> np.ndarray:
    # Dividing by sqrt(dim) gives the noise a norm of about `scale`, whatever the dimension.
    return generator.standard_normal((rows, dim), dtype=np.float32) * np.float32(scale / np.sqrt(dim))


def synthetic_pairs(rows: int, dim: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(anchors, positives, text_ids)`` for ``rows`` synthetic pairs.

    Embeddings are L2-normalised float32 ``(rows, dim)`` arrays, built in chunks so that the peak
    memory stays close to the two outputs. ``text_ids`` is ``(rows, 2)`` int64: anchor ``i`` has id
    ``i``, and positives have ids from ``rows`` on, equal for repeated positives.
    """
    generator = np.random.default_rng(seed)
    topics = max(1, rows // ROWS_PER_TOPIC)
    subtopics = max(1, rows // ROWS_PER_SUBTOPIC)

    shared_direction = _normalise(generator.standard_normal((1, dim), dtype=np.float32))
    topic_centres = _normalise(generator.standard_normal((topics, dim), dtype=np.float32))
    subtopic_topics = generator.integers(topics, size=subtopics)
    subtopic_centres = _normalise(topic_centres[subtopic_topics] + _noise(generator, subtopics, dim, SUBTOPIC_SPREAD))
    row_subtopics = generator.integers(subtopics, size=rows)

    anchors = np.empty((rows, dim), dtype=np.float32)
    positives = np.empty((rows, dim), dtype=np.float32)
    shift = np.float32(SHARED_DIRECTION_WEIGHT) * shared_direction
    for start in range(0, rows, _CHUNK_ROWS):
        chunk = slice(start, min(start + _CHUNK_ROWS, rows))
        size = chunk.stop - chunk.start
        latent = _normalise(subtopic_centres[row_subtopics[chunk]] + _noise(generator, size, dim, LATENT_SPREAD))
        anchors[chunk] = _normalise(latent + _noise(generator, size, dim, VIEW_NOISE) + shift)
        positives[chunk] = _normalise(latent + _noise(generator, size, dim, VIEW_NOISE) + shift)

    positive_ids = _repeat_positives(generator, row_subtopics, subtopics)
    repeated = np.nonzero(positive_ids != np.arange(rows))[0]
    positives[repeated] = positives[positive_ids[repeated]]
    text_ids = np.column_stack([np.arange(rows, dtype=np.int64), rows + positive_ids])
    return anchors, positives, text_ids


def _repeat_positives(generator: np.random.Generator, row_subtopics: np.ndarray, subtopics: int) -> np.ndarray:
    """Return each row's positive id: its own row, or a row of its subtopic whose positive it repeats."""
    rows = len(row_subtopics)
    positive_ids = np.arange(rows, dtype=np.int64)
    repeating = np.zeros(rows, dtype=bool)
    repeating[generator.choice(rows, size=int(REPEATED_POSITIVE_SHARE * rows), replace=False)] = True

    # Rows that keep their own positive, grouped by subtopic, are the texts that others repeat.
    originals = np.nonzero(~repeating)[0]
    originals = originals[np.argsort(row_subtopics[originals], kind="stable")]
    starts = np.searchsorted(row_subtopics[originals], np.arange(subtopics + 1))

    copies = np.nonzero(repeating)[0]
    group = row_subtopics[copies]
    group_sizes = starts[group + 1] - starts[group]
    copies, group, group_sizes = copies[group_sizes > 0], group[group_sizes > 0], group_sizes[group_sizes > 0]
    picks = (generator.random(len(copies)) * group_sizes).astype(np.int64)
    positive_ids[copies] = originals[starts[group] + picks]
    return positive_ids
