import numpy as np
import pytest

from b3_st.batches import EpochBatcher


def _cluster_ids(rows: int, cluster_size: int) -> np.ndarray:
    ids = np.arange(rows) // cluster_size
    return np.random.default_rng(0).permutation(ids)


def _unique_texts(rows: int) -> np.ndarray:
    return np.column_stack([np.arange(rows), rows + np.arange(rows)])


@pytest.mark.parametrize("rows,drop_last", [(1000, False), (1000, True), (1024, False), (1003, False), (1003, True)])
def test_every_row_once_and_exact_length(rows, drop_last):
    batcher = EpochBatcher(_cluster_ids(rows, 8), 8, 64, drop_last, _unique_texts(rows))
    batches = batcher.epoch_batches(seed=0)

    assert len(batches) == len(batcher)
    seen = np.concatenate(batches)
    assert len(seen) == len(np.unique(seen))
    if drop_last:
        assert all(len(batch) == 64 for batch in batches)
        assert len(seen) == rows // 64 * 64
    else:
        assert sorted(seen.tolist()) == list(range(rows))
        assert all(len(batch) == 64 for batch in batches[:-1])


def test_batches_hold_whole_clusters():
    cluster_ids = _cluster_ids(1024, 8)
    batcher = EpochBatcher(cluster_ids, 8, 64, False, _unique_texts(1024))
    for batch in batcher.epoch_batches(seed=3):
        clusters, counts = np.unique(cluster_ids[batch], return_counts=True)
        assert len(clusters) == 8
        assert np.all(counts == 8)


def test_same_seed_same_batches_other_seed_differs():
    batcher = EpochBatcher(_cluster_ids(1024, 8), 8, 64, False, _unique_texts(1024))
    first = batcher.epoch_batches(seed=5)
    again = batcher.epoch_batches(seed=5)
    other = batcher.epoch_batches(seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_duplicate_texts_never_share_a_batch():
    rows = 2048
    # 64 rows share each positive text: random batches of 64 would almost surely repeat one.
    text_ids = np.column_stack([np.arange(rows), rows + np.arange(rows) % 32])
    # Cluster c holds rows 8c..8c+7, whose texts differ; clusters c and c + 4 share all eight texts.
    cluster_ids = np.arange(rows) // 8
    batcher = EpochBatcher(cluster_ids, 8, 32, False, text_ids)

    for seed in range(3):
        batches = batcher.epoch_batches(seed=seed)
        assert sorted(np.concatenate(batches).tolist()) == list(range(rows))
        for batch in batches:
            texts = text_ids[batch].reshape(-1)
            assert len(texts) == len(set(texts.tolist()))


def test_impossible_deduplication_raises():
    rows = 64
    text_ids = np.column_stack([np.arange(rows), np.full(rows, 1000)])
    with pytest.raises(ValueError, match="Deduplicate the dataset"):
        EpochBatcher(np.arange(rows) // 8, 8, 32, False, text_ids).epoch_batches(seed=0)


def test_batch_size_not_multiple_of_cluster_size_raises():
    with pytest.raises(ValueError, match="batch_size=60 is not a multiple of cluster_size=8"):
        EpochBatcher(_cluster_ids(128, 8), 8, 60, False, _unique_texts(128))


def test_drop_last_with_fewer_rows_than_batch_raises():
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatcher(_cluster_ids(40, 8), 8, 64, True, _unique_texts(40))


def test_epoch_of_million_rows_is_vectorised():
    rows = 1_000_000
    batcher = EpochBatcher(_cluster_ids(rows, 8), 8, 64, False, _unique_texts(rows))
    batches = batcher.epoch_batches(seed=0)
    assert len(batches) == rows // 64
    assert batches[0].dtype.kind == "i"
