import pickle

import numpy as np
import pytest
from datasets import Dataset

import b3_st.mining
import b3_st.teacher
from b3_st import B3BatchSampler, B3Config, MinedResult, MinedResultMismatchError, load_or_mine
from conftest import load_wordnet


@pytest.fixture()
def tiny_config(tiny_teacher_path, tmp_path):
    return B3Config(teacher=tiny_teacher_path, cache_dir=str(tmp_path / "cache"), show_progress_bar=False)


def _texts_clash(dataset: Dataset, batch: list[int]) -> bool:
    texts = []
    for row in batch:
        texts.extend({dataset[row]["anchor"], dataset[row]["positive"]})
    return len(texts) != len(set(texts))


def test_sampler_guarantees_on_wordnet_rows(tiny_config):
    # The first 3,000 rows in file order hold many near-duplicate senses and repeated positives.
    dataset = load_wordnet(rows=3000, seed=None)
    sampler = B3BatchSampler(dataset, batch_size=64, drop_last=False, seed=7, config=tiny_config)

    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == -(-3000 // 64)
        assert sorted(row for batch in batches for row in batch) == list(range(3000))
        assert not any(_texts_clash(dataset, batch) for batch in batches)


def test_sampler_drop_last_drops_only_the_tail(tiny_config, wordnet_small):
    sampler = B3BatchSampler(wordnet_small, batch_size=64, drop_last=True, config=tiny_config)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2000 // 64
    assert all(len(batch) == 64 for batch in batches)
    assert len({row for batch in batches for row in batch}) == 2000 // 64 * 64


def test_set_epoch_reshuffles_deterministically(tiny_config, wordnet_small):
    sampler = B3BatchSampler(wordnet_small, batch_size=32, drop_last=False, seed=3, config=tiny_config)
    again = B3BatchSampler(wordnet_small, batch_size=32, drop_last=False, seed=3, config=tiny_config)

    sampler.set_epoch(0)
    epoch_zero = list(sampler)
    sampler.set_epoch(1)
    epoch_one = list(sampler)
    again.set_epoch(1)

    assert epoch_zero != epoch_one
    assert epoch_one == list(again)
    assert sampler.epoch_batches(0) == epoch_zero


def test_batches_are_whole_clusters(tiny_config, wordnet_small):
    sampler = B3BatchSampler(wordnet_small, batch_size=64, drop_last=True, config=tiny_config)
    cluster_ids = sampler.mined.cluster_ids
    for batch in sampler:
        _, counts = np.unique(cluster_ids[batch], return_counts=True)
        assert np.all(counts == 8)


def test_cache_reused_without_encoding_or_mining(tiny_config, wordnet_small, monkeypatch):
    first = B3BatchSampler(wordnet_small, batch_size=64, drop_last=False, config=tiny_config)

    def fail(*args, **kwargs):
        raise AssertionError("the cached result should have been used")

    monkeypatch.setattr(b3_st.mining, "mine", fail)
    monkeypatch.setattr(b3_st.teacher, "load_teacher", fail)
    second = B3BatchSampler(wordnet_small, batch_size=64, drop_last=False, config=tiny_config)
    assert np.array_equal(first.mined.cluster_ids, second.mined.cluster_ids)
    assert list(first) == list(second)


def test_new_settings_mine_again_but_reuse_embeddings(tiny_config, wordnet_small, monkeypatch):
    first = B3BatchSampler(wordnet_small, batch_size=64, drop_last=False, config=tiny_config)

    def fail(*args, **kwargs):
        raise AssertionError("the cached embeddings should have been used")

    monkeypatch.setattr(b3_st.teacher, "load_teacher", fail)
    second = B3BatchSampler(wordnet_small, batch_size=64, drop_last=False, config=tiny_config, cluster_size=4)
    assert second.mined.config.cluster_size == 4
    assert np.bincount(second.mined.cluster_ids).max() == 4
    assert first.mined.config.cluster_size == 8


def test_changed_rows_mine_again(tiny_config, wordnet_small):
    first = load_or_mine(wordnet_small, tiny_config)
    changed = wordnet_small.map(lambda row, index: {"positive": row["positive"] + (" x" if index == 5 else "")},
                                with_indices=True)
    second = load_or_mine(changed, tiny_config)
    assert first.fingerprint != second.fingerprint
    with pytest.raises(MinedResultMismatchError, match="other contents"):
        first.check_matches(second.fingerprint, second.rows)


def test_corrupt_cache_is_mined_again(tiny_config, wordnet_small):
    from b3_st.cache import mined_dir
    from b3_st.data import read_pairs

    load_or_mine(wordnet_small, tiny_config)
    folder = mined_dir(tiny_config.cache_dir, read_pairs(wordnet_small).fingerprint, tiny_config.settings_key())
    (folder / "clusters.parquet").write_bytes(b"not parquet")
    result = load_or_mine(wordnet_small, tiny_config)
    assert result.rows == 2000
    assert MinedResult.load(folder).rows == 2000


def test_mined_result_round_trips(tiny_config, wordnet_small, tmp_path):
    result = load_or_mine(wordnet_small, tiny_config)
    loaded = MinedResult.load(result.save(tmp_path / "saved"))
    assert np.array_equal(loaded.cluster_ids, result.cluster_ids)
    assert np.array_equal(loaded.windows, result.windows)
    assert loaded.config.result_settings() == result.config.result_settings()
    assert loaded.stats == result.stats
    assert loaded.fingerprint == result.fingerprint


def test_given_mined_result_is_checked(tiny_config, wordnet_small):
    result = load_or_mine(wordnet_small, tiny_config)
    other = load_wordnet(rows=2000, seed=1)
    with pytest.raises(MinedResultMismatchError, match="other contents"):
        B3BatchSampler(other, batch_size=64, drop_last=False, config=tiny_config, mined=result)
    with pytest.raises(MinedResultMismatchError, match="cluster_size=8 but cluster_size=4"):
        B3BatchSampler(wordnet_small, batch_size=64, drop_last=False, config=tiny_config, cluster_size=4,
                       mined=result)


def test_batch_size_not_multiple_of_cluster_size(tiny_config, wordnet_small):
    with pytest.raises(ValueError, match="batch_size=60 is not a multiple of cluster_size=8"):
        B3BatchSampler(wordnet_small, batch_size=60, drop_last=False, config=tiny_config)


def test_fewer_rows_than_window(tiny_config):
    dataset = load_wordnet(rows=120, seed=0)
    with pytest.raises(ValueError, match=r"120 rows, but skip_top=30 plus window_size=100 needs at least 131"):
        B3BatchSampler(dataset, batch_size=16, drop_last=False, config=tiny_config)


def test_fewer_rows_than_batch(tiny_config):
    dataset = load_wordnet(rows=200, seed=0)
    with pytest.raises(ValueError, match="200 rows, fewer than one batch of 256"):
        B3BatchSampler(dataset, batch_size=256, drop_last=False, config=tiny_config)


def test_missing_column_error(tiny_config, wordnet_small):
    with pytest.raises(ValueError, match="anchor_column='query' is not a column"):
        B3BatchSampler(wordnet_small, batch_size=64, drop_last=False, config=tiny_config, anchor_column="query")


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"skip_top": -1}, "skip_top=-1 is invalid"),
        ({"window_size": 0}, "window_size=0 is invalid"),
        ({"cluster_size": 0}, "cluster_size=0 is invalid"),
        ({"edges": "some"}, "edges='some' is invalid"),
        ({"isolated_rows": "drop"}, "isolated_rows='drop' is invalid"),
    ],
)
def test_invalid_settings_rejected(settings, message):
    with pytest.raises(ValueError, match=message):
        B3Config(**settings)


def test_bound_factory_repr_and_pickle(tiny_teacher_path):
    factory = B3BatchSampler.bind(teacher=tiny_teacher_path, cluster_size=4, skip_top=10)
    text = repr(factory)
    assert text.startswith("B3BatchSampler.bind(")
    assert "cluster_size=4" in text
    assert "skip_top=10" in text
    assert "window_size" not in text
    assert pickle.loads(pickle.dumps(factory)) == factory
