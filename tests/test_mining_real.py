"""Mining with the real all-MiniLM-L6-v2 teacher on WordNet rows."""

import numpy as np
import pytest

from b3_st import B3Config, load_or_mine
from b3_st.data import read_pairs
from conftest import load_wordnet


@pytest.fixture(scope="module")
def mined(minilm_path, tmp_path_factory):
    dataset = load_wordnet(rows=3000, seed=11)
    config = B3Config(teacher=minilm_path, skip_top=3, window_size=20, cluster_size=8,
                      cache_dir=str(tmp_path_factory.mktemp("real_cache")), show_progress_bar=False)
    return dataset, config, load_or_mine(dataset, config, stats_batch_size=64)


def test_b3_batches_are_harder_than_random(mined):
    _, _, result = mined
    assert result.stats["hardness_batch_size"] == 64
    assert result.stats["hardness_b3"] > result.stats["hardness_random"] + 0.05


def test_statistics_are_complete(mined):
    _, _, result = mined
    stats = result.stats
    assert stats["rows"] == 3000
    assert stats["edges"] > 0
    assert 0 <= stats["isolated_rows"] < 3000
    assert sum(int(size) * count for size, count in stats["community_size_histogram"].items()) == 3000
    assert 0.5 < stats["rows_in_full_clusters_share"] <= 1.0
    for stage in ("encode", "search", "graph", "communities", "clusters", "mining_after_encode"):
        assert stats["seconds"][stage] >= 0
    assert result.metadata["versions"]["faiss-cpu"]


def test_windows_leave_out_identical_positives(mined):
    dataset, _, result = mined
    positive_ids = read_pairs(dataset).positive_ids
    for row in range(result.rows):
        members = result.windows[row][result.windows[row] >= 0]
        assert row not in members
        assert not np.any(positive_ids[members] == positive_ids[row])


def test_clusters_group_similar_definitions(mined, monkeypatch):
    import b3_st.teacher
    from b3_st.teacher import embed_pairs

    def fail(*args, **kwargs):
        raise AssertionError("the embeddings of the mining run should be cached")

    dataset, config, result = mined
    monkeypatch.setattr(b3_st.teacher, "load_teacher", fail)
    positives = embed_pairs(read_pairs(dataset), config).positives
    cluster_ids = result.cluster_ids

    same_cluster = []
    for cluster in range(0, cluster_ids.max(), 7):
        members = np.nonzero(cluster_ids == cluster)[0]
        similarities = positives[members] @ positives[members].T
        same_cluster.append(similarities[~np.eye(len(members), dtype=bool)].mean())
    shuffled = np.random.default_rng(0).permutation(len(cluster_ids))[:800].reshape(-1, 8)
    random_pairs = [
        (positives[rows] @ positives[rows].T)[~np.eye(8, dtype=bool)].mean() for rows in shuffled
    ]
    assert np.mean(same_cluster) > np.mean(random_pairs) + 0.1
