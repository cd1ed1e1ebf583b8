import numpy as np
from conftest import normalised_vectors

from b3_st.ranking import compute_rank_windows, window_recall


def _brute_force_windows(anchors, positives, positive_ids, skip_top, window_size):
    similarities = anchors @ positives.T
    windows = []
    for row in range(len(anchors)):
        order = np.argsort(-similarities[row], kind="stable")
        order = [j for j in order if positive_ids[j] != positive_ids[row]]
        windows.append(order[skip_top : skip_top + window_size])
    return windows


def test_exact_windows_match_brute_force():
    anchors, positives = normalised_vectors(300, 16, 0), normalised_vectors(300, 16, 1)
    positive_ids = np.arange(300)
    windows = compute_rank_windows(anchors, positives, positive_ids, 5, 20, show_progress_bar=False)

    expected = _brute_force_windows(anchors, positives, positive_ids, 5, 20)
    for row in range(300):
        assert set(windows.indices[row].tolist()) == set(expected[row])
    assert windows.search == "exact"
    assert windows.recall is None


def test_windows_exclude_self_and_duplicate_positives():
    anchors, positives = normalised_vectors(200, 8, 2), normalised_vectors(200, 8, 3)
    positive_ids = np.arange(200) % 50  # every positive text appears four times
    positives = positives[positive_ids]  # identical texts have identical embeddings
    windows = compute_rank_windows(anchors, positives, positive_ids, 0, 30, show_progress_bar=False)

    for row in range(200):
        members = windows.indices[row][windows.indices[row] >= 0]
        assert row not in members
        assert not np.any(positive_ids[members] == positive_ids[row])


def test_windows_are_sorted_by_score():
    anchors, positives = normalised_vectors(150, 8, 4), normalised_vectors(150, 8, 5)
    windows = compute_rank_windows(anchors, positives, np.arange(150), 3, 40, show_progress_bar=False)
    assert np.all(np.diff(windows.scores, axis=1) <= 1e-6)


def test_short_windows_are_padded():
    anchors, positives = normalised_vectors(20, 8, 6), normalised_vectors(20, 8, 7)
    windows = compute_rank_windows(anchors, positives, np.arange(20), 5, 30, show_progress_bar=False)
    assert windows.indices.shape == (20, 30)
    # 19 candidates minus 5 skipped leave 14 members.
    assert np.all(windows.window_lengths == 14)
    assert np.all(windows.indices[:, 14:] == -1)


def test_approximate_search_reports_recall():
    centres = normalised_vectors(40, 32, 8)
    generator = np.random.default_rng(9)
    assignments = generator.integers(0, 40, size=4000)
    anchors = centres[assignments] + 0.3 * generator.normal(size=(4000, 32)).astype(np.float32)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    positives = anchors + 0.1 * generator.normal(size=(4000, 32)).astype(np.float32)
    positives /= np.linalg.norm(positives, axis=1, keepdims=True)

    windows = compute_rank_windows(anchors, positives.astype(np.float32), np.arange(4000), 5, 20,
                                   exact_search_max_rows=1000, recall_sample_rows=300, show_progress_bar=False)
    assert windows.search.startswith("ivf")
    assert 0.0 < windows.recall <= 1.0


def test_window_recall_counts_overlap():
    exact = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    approximate = np.array([[1, 2, 9, 8], [6, 5, 7, -1]])
    assert window_recall(approximate, exact) == 4 / 6
