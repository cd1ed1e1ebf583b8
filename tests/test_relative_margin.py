"""The positive-aware false-negative filter (``relative_margin``) beside the rank cut."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import normalised_vectors

from b3_st import B3Config, B3TrainingArguments, MinedResultMismatchError, load_or_mine
from b3_st.ranking import compute_rank_windows, drop_close_candidates


def _close_pairs(rows: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchors near their positives, so that the positive scores are well above zero."""
    positives = normalised_vectors(rows, dim, seed)
    noise = normalised_vectors(rows, dim, seed + 1)
    anchors = positives + 0.8 * noise
    return anchors / np.linalg.norm(anchors, axis=1, keepdims=True), positives


def test_drop_moves_kept_members_up():
    anchors = np.array([[1.0, 0.0]], dtype=np.float32)
    positives = np.array([[1.0, 0.0]], dtype=np.float32)
    indices = np.array([[4, 7, 2, 9, -1]], dtype=np.int32)
    scores = np.array([[0.99, 0.97, 0.9, 0.5, -np.inf]], dtype=np.float32)

    kept_indices, kept_scores, dropped = drop_close_candidates(indices, scores, anchors, positives, 0.05)

    assert dropped == 2
    assert kept_indices.tolist() == [[2, 9, -1, -1, -1]]
    assert kept_scores[0, :2].tolist() == pytest.approx([0.9, 0.5])
    assert np.isneginf(kept_scores[0, 2:]).all()


def test_negative_positive_score_threshold():
    anchors = np.array([[1.0, 0.0]], dtype=np.float32)
    positives = np.array([[-0.5, 0.866]], dtype=np.float32)
    indices = np.array([[3, 8]], dtype=np.int32)
    scores = np.array([[-0.52, -0.6]], dtype=np.float32)

    kept_indices, _, dropped = drop_close_candidates(indices, scores, anchors, positives, 0.1)

    assert dropped == 1
    assert kept_indices.tolist() == [[8, -1]]


def test_drop_keeps_input_arrays():
    anchors = np.array([[1.0, 0.0]], dtype=np.float32)
    indices = np.array([[4, 7]], dtype=np.int32)
    scores = np.array([[0.99, 0.5]], dtype=np.float32)

    drop_close_candidates(indices, scores, anchors, anchors, 0.05)

    assert indices.tolist() == [[4, 7]]


def test_windows_respect_margin():
    anchors, positives = _close_pairs(600, 16, seed=3)
    positive_ids = np.arange(600)
    plain = compute_rank_windows(anchors, positives, positive_ids, 0, 40, show_progress_bar=False)
    filtered = compute_rank_windows(anchors, positives, positive_ids, 0, 40, show_progress_bar=False,
                                    relative_margin=0.2)

    positive_scores = np.einsum("ij,ij->i", anchors, positives)
    limits = positive_scores - 0.2 * np.abs(positive_scores)
    present = filtered.indices >= 0
    assert (filtered.scores[present] <= np.repeat(limits, present.sum(axis=1)) + 1e-6).all()
    assert filtered.dropped_by_margin > 0
    assert filtered.dropped_by_margin == int((plain.indices >= 0).sum() - present.sum())

    for row in range(600):
        members = filtered.indices[row][present[row]]
        order = [int(np.flatnonzero(plain.indices[row] == member)[0]) for member in members]
        assert order == sorted(order)


def test_margin_zero_drops_only_above_positive():
    anchors, positives = _close_pairs(300, 16, seed=5)
    positive_ids = np.arange(300)
    filtered = compute_rank_windows(anchors, positives, positive_ids, 0, 30, show_progress_bar=False,
                                    relative_margin=0.0)

    positive_scores = np.einsum("ij,ij->i", anchors, positives)
    plain = compute_rank_windows(anchors, positives, positive_ids, 0, 30, show_progress_bar=False)
    above = (plain.scores > positive_scores[:, None]) & (plain.indices >= 0)
    assert filtered.dropped_by_margin == int(above.sum())


@pytest.mark.parametrize("margin", [-0.1, 1.0, 1.5])
def test_invalid_margin_names_value(margin):
    with pytest.raises(ValueError, match=f"relative_margin={margin}"):
        B3Config(relative_margin=margin)


def test_unset_margin_keeps_settings_key():
    default = B3Config()
    filtered = B3Config(relative_margin=0.05)

    assert "relative_margin" not in default.result_settings()
    assert filtered.result_settings()["relative_margin"] == 0.05
    assert default.settings_key() != filtered.settings_key()


def test_training_arguments_pass_margin(tmp_path):
    args = B3TrainingArguments(output_dir=str(tmp_path), b3_teacher="some/teacher", b3_relative_margin=0.05)

    assert args.b3_config().relative_margin == 0.05


def test_mined_margin_is_checked(tiny_teacher_path, wordnet_small, tmp_path):
    config = B3Config(teacher=tiny_teacher_path, cache_dir=str(tmp_path), show_progress_bar=False,
                      relative_margin=0.05)
    mined = load_or_mine(wordnet_small, config)

    assert mined.config.relative_margin == 0.05
    assert mined.stats["window_members_dropped_by_margin"] >= 0

    without = dataclasses.replace(config, relative_margin=None)
    with pytest.raises(MinedResultMismatchError) as caught:
        mined.check_matches(mined.fingerprint, mined.rows, without)
    assert caught.value.field == "relative_margin"


def test_card_section_names_margin():
    from b3_st.card_record import SamplerRecord
    from b3_st.card_section import render_section

    config = {"teacher": "t", "skip_top": 0, "window_size": 100, "cluster_size": 8, "seed": 0,
              "relative_margin": 0.05, "edges": "mutual", "isolated_rows": "attach", "community_backend": "leiden"}
    record = SamplerRecord(config=config, batch_size=64, drop_last=False, seed=0, fingerprint="f" * 64, rows=100,
                           anchor_column="anchor", positive_column="positive")

    section = render_section([record])

    assert "| Positive-aware filter (relative margin) | 0.05: window members scoring above 95%" in section
    assert "relative_margin=0.05" in section


def test_hub_card_usage_passes_margin():
    from b3_st.hub_card import build_card

    entry = {"config_name": "c", "path": "c", "rows": 10, "teacher": "t", "p": 0, "m": 100, "K": 8, "seed": 0,
             "relative_margin": 0.05}

    card = build_card(None, entry, "user/orderings")

    assert "    relative_margin=0.05,\n" in card.content
    assert card.data.to_dict()["b3_orderings"][0]["relative_margin"] == 0.05
