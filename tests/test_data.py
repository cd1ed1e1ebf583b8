import numpy as np
import pytest
from datasets import Dataset

from b3_st.data import assign_text_ids, fingerprint_texts, read_pairs, resolve_columns


def test_columns_default_to_first_two_text_columns():
    dataset = Dataset.from_dict({"label": [1], "query": ["a"], "doc": ["b"], "extra": ["c"]})
    assert resolve_columns(dataset, None, None) == ("query", "doc")


def test_columns_explicit_names_are_used():
    dataset = Dataset.from_dict({"query": ["a"], "doc": ["b"], "extra": ["c"]})
    assert resolve_columns(dataset, "extra", "query") == ("extra", "query")


def test_missing_column_error_names_value_and_columns():
    dataset = Dataset.from_dict({"query": ["a"], "doc": ["b"]})
    with pytest.raises(ValueError, match=r"anchor_column='question' is not a column.*\['query', 'doc'\]"):
        resolve_columns(dataset, "question", None)


def test_single_text_column_rejected():
    dataset = Dataset.from_dict({"text": ["a"], "label": [0]})
    with pytest.raises(ValueError, match="anchor and a positive text column"):
        resolve_columns(dataset, None, None)


def test_same_column_twice_rejected():
    dataset = Dataset.from_dict({"query": ["a"], "doc": ["b"]})
    with pytest.raises(ValueError, match="both 'query'"):
        resolve_columns(dataset, "query", "query")


def test_empty_dataset_rejected():
    dataset = Dataset.from_dict({"anchor": [], "positive": []})
    with pytest.raises(ValueError, match="empty"):
        read_pairs(dataset)


def test_non_text_cell_rejected_with_row():
    dataset = Dataset.from_dict({"anchor": ["a", None, "c"], "positive": ["x", "y", "z"]})
    with pytest.raises(ValueError, match=r"Row 1 of column 'anchor' is NoneType"):
        read_pairs(dataset)


def test_blank_cell_rejected_with_row():
    dataset = Dataset.from_dict({"anchor": ["a", "b"], "positive": ["x", "   "]})
    with pytest.raises(ValueError, match=r"Row 1 of column 'positive' is empty"):
        read_pairs(dataset)


def test_text_ids_shared_across_columns():
    ids = assign_text_ids(["cat", "dog", "cat"], ["dog", "bird", "fish"])
    assert ids[0, 0] == ids[2, 0]
    assert ids[1, 0] == ids[0, 1]
    assert len(np.unique(ids)) == 4


def test_fingerprint_changes_with_content_and_order():
    base = fingerprint_texts(["a", "b"], ["x", "y"])
    assert base == fingerprint_texts(["a", "b"], ["x", "y"])
    assert base != fingerprint_texts(["b", "a"], ["y", "x"])
    assert base != fingerprint_texts(["a", "b"], ["x", "z"])
    # Moving a boundary between cells must change the digest too.
    assert fingerprint_texts(["ab", ""], ["x", "y"]) != fingerprint_texts(["a", "b"], ["x", "y"])
