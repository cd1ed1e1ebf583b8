"""Model cards of models trained on B3 batches, and rebuilding their sampler from the saved folder."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO_ROOT, load_wordnet
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.modules import StaticEmbedding
from transformers import AutoTokenizer

from b3_st import (
    B3BatchSampler,
    B3Config,
    B3TrainingArguments,
    MinedResultMismatchError,
    OrderingNotFoundError,
    add_b3_to_model_card,
    load_sampler_from_model,
    read_card_records,
)
from b3_st.card_record import CARD_FILE
from b3_st.model_card import B3_TAG, B3ModelCardMixin

TRAIN_ROWS = 600
BATCH_SIZE = 32
TRAIN_SEED = 7
MINING = {"skip_top": 5, "window_size": 20, "cluster_size": 8}


def _student(minilm_path: str) -> SentenceTransformer:
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    weights = torch.randn(tokenizer.vocab_size, 16, generator=torch.Generator().manual_seed(1))
    return SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu")


def _front_matter(readme: str) -> dict:
    _, header, _ = readme.split("---\n", 2)
    return yaml.safe_load(header)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_teacher_path, minilm_path):
    """A student trained for three steps on B3 batches, evaluated once, and saved."""
    folder = tmp_path_factory.mktemp("trained")
    train_dataset = load_wordnet(rows=TRAIN_ROWS, seed=0)
    eval_dataset = load_wordnet("definition_words_test", rows=200, seed=0)
    model = _student(minilm_path)
    args = B3TrainingArguments(
        output_dir=str(folder / "run"),
        per_device_train_batch_size=BATCH_SIZE,
        per_device_eval_batch_size=BATCH_SIZE,
        max_steps=3,
        seed=TRAIN_SEED,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        b3_teacher=tiny_teacher_path,
        b3_skip_top=MINING["skip_top"],
        b3_window_size=MINING["window_size"],
        b3_cluster_size=MINING["cluster_size"],
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset,
                                         eval_dataset=eval_dataset, loss=MultipleNegativesRankingLoss(model))
    trainer.train()
    trainer.evaluate()

    # The sampler object that produced the training batches.
    sampler = trainer._train_dataloader.batch_sampler
    model_folder = folder / "model"
    model.save_pretrained(str(model_folder))
    return {"model": model, "sampler": sampler, "folder": model_folder, "dataset": train_dataset,
            "eval_dataset": eval_dataset, "teacher": tiny_teacher_path}


def test_trained_sampler_is_b3(trained):
    assert isinstance(trained["sampler"], B3BatchSampler)
    assert trained["sampler"].seed == TRAIN_SEED


def test_readme_has_b3_section_and_tag(trained):
    readme = (trained["folder"] / "README.md").read_text(encoding="utf-8")

    assert B3_TAG in _front_matter(readme)["tags"]
    assert "### Training Batches (B3)" in readme
    assert f"`{trained['teacher']}` (default branch; no revision pinned)" in readme
    assert "| Skipped top-ranked positives (p) | 5 |" in readme
    assert "| Rank window after them (m) | 20 |" in readme
    assert "| Rows per cluster (K) | 8 |" in readme
    assert f"| Batch size | {BATCH_SIZE} rows (4 clusters), drop last batch: False |" in readme
    assert f"| Shuffle seed | {TRAIN_SEED} (epoch e shuffles the clusters with seed + e) |" in readme
    assert "| Mining seed | 0 |" in readme
    assert "| Mined ordering | Local only" in readme
    assert "load_sampler_from_model('path/to/this/model', train_dataset)" in readme
    assert f"B3BatchSampler(train_dataset, batch_size={BATCH_SIZE}, drop_last=False, seed={TRAIN_SEED}" in readme
    assert "eprint={2505.11293}" in readme


def test_section_sits_in_training_details(trained):
    readme = (trained["folder"] / "README.md").read_text(encoding="utf-8")
    section = readme.index("### Training Batches (B3)")

    assert readme.index("## Training Details") < section
    assert section < readme.index("### Training Hyperparameters")
    assert readme.count("### Training Batches (B3)") == 1


def test_card_file_records_sampler(trained):
    payload = json.loads((trained["folder"] / CARD_FILE).read_text(encoding="utf-8"))
    samplers = payload["samplers"]

    # The evaluation dataset got a B3 sampler too, but only the training one is recorded.
    assert len(samplers) == 1
    record = samplers[0]
    assert record["batch_size"] == BATCH_SIZE
    assert record["seed"] == TRAIN_SEED
    assert record["drop_last"] is False
    assert record["rows"] == TRAIN_ROWS
    assert record["fingerprint"] == trained["sampler"].mined.fingerprint
    assert record["config"]["teacher"] == trained["teacher"]
    assert {name: record["config"][name] for name in MINING} == MINING
    assert record["ordering"]["location"] == "local"
    assert record["anchor_column"] == "anchor"
    assert record["positive_column"] == "positive"


def test_rebuild_in_fresh_process(trained):
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(REPO_ROOT / "tests")!r})
        from conftest import load_wordnet
        from b3_st import load_sampler_from_model

        dataset = load_wordnet(rows={TRAIN_ROWS}, seed=0)
        sampler = load_sampler_from_model({str(trained["folder"])!r}, dataset, show_progress_bar=False)
        print(json.dumps({{"epoch_0": sampler.epoch_batches(0), "epoch_1": sampler.epoch_batches(1)}}))
        """
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                               timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rebuilt = json.loads(completed.stdout.strip().splitlines()[-1])

    original = trained["sampler"]
    assert rebuilt["epoch_0"] == original.epoch_batches(0)
    assert rebuilt["epoch_1"] == original.epoch_batches(1)
    assert rebuilt["epoch_0"] != rebuilt["epoch_1"]


def test_rebuild_without_ordering_raises(trained, tmp_path):
    with pytest.raises(OrderingNotFoundError, match="allow_mining=True"):
        load_sampler_from_model(trained["folder"], trained["dataset"], cache_dir=tmp_path)


def test_rebuild_mines_again_when_allowed(trained, tmp_path):
    sampler = load_sampler_from_model(trained["folder"], trained["dataset"], cache_dir=tmp_path,
                                      allow_mining=True, show_progress_bar=False)

    assert sampler.epoch_batches(0) == trained["sampler"].epoch_batches(0)
    assert sampler.epoch_batches(1) == trained["sampler"].epoch_batches(1)


def test_rebuild_from_mined_folder(trained, tmp_path):
    mined_folder = trained["sampler"].mined.save(tmp_path / "mined")

    sampler = load_sampler_from_model(trained["folder"], trained["dataset"], cache_dir=tmp_path / "empty",
                                      mined=mined_folder)

    assert sampler.epoch_batches(1) == trained["sampler"].epoch_batches(1)


def test_rebuild_with_other_rows_raises(trained):
    other = load_wordnet(rows=TRAIN_ROWS - 8, seed=0)

    with pytest.raises(MinedResultMismatchError, match="The row count differs"):
        load_sampler_from_model(trained["folder"], other)


def test_rebuild_with_reordered_rows_raises(trained):
    reordered = trained["dataset"].select(list(reversed(range(TRAIN_ROWS))))

    with pytest.raises(MinedResultMismatchError, match="contents differ"):
        load_sampler_from_model(trained["folder"], reordered)


def test_rebuild_with_mined_for_other_settings_raises(trained, tiny_teacher_path, tmp_path):
    other = B3BatchSampler(trained["dataset"], batch_size=BATCH_SIZE, drop_last=False,
                           config=B3Config(teacher=tiny_teacher_path, show_progress_bar=False,
                                           **{**MINING, "window_size": 25}))

    with pytest.raises(MinedResultMismatchError, match="window_size=25"):
        load_sampler_from_model(trained["folder"], trained["dataset"], mined=other.mined)


def test_read_records_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=CARD_FILE):
        read_card_records(tmp_path)


def test_read_records_offline_hub_id(monkeypatch):
    import huggingface_hub.constants

    # huggingface_hub reads HF_HUB_OFFLINE once, at import; set the constant so no request is sent.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="offline mode or no connection"):
        read_card_records("some-user/not-cached-model")


@pytest.fixture
def sampler_and_model(tiny_teacher_path, minilm_path):
    dataset = load_wordnet(rows=TRAIN_ROWS, seed=0)
    config = B3Config(teacher=tiny_teacher_path, show_progress_bar=False, **MINING)
    sampler = B3BatchSampler(dataset, batch_size=BATCH_SIZE, drop_last=False, seed=3, config=config)
    return sampler, _student(minilm_path)


def test_sampler_outside_trainer_registers_nothing(sampler_and_model):
    _, model = sampler_and_model

    assert not isinstance(model.model_card_data, B3ModelCardMixin)
    assert B3_TAG not in model.model_card_data.tags


def test_manual_registration_writes_card(sampler_and_model, tmp_path):
    sampler, model = sampler_and_model
    add_b3_to_model_card(model, sampler)
    add_b3_to_model_card(model, sampler)
    model.save_pretrained(str(tmp_path))

    records = read_card_records(tmp_path)
    assert len(records) == 1
    assert records[0].seed == 3
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "### Training Batches (B3)" in readme
    assert "#### Dataset 1" not in readme


def test_two_samplers_get_two_records(sampler_and_model, tiny_teacher_path, tmp_path):
    sampler, model = sampler_and_model
    other = B3BatchSampler(sampler.dataset, batch_size=2 * BATCH_SIZE, drop_last=True, seed=3, config=sampler.config)
    add_b3_to_model_card(model, sampler)
    add_b3_to_model_card(model, other)
    model.save_pretrained(str(tmp_path))

    records = read_card_records(tmp_path)
    assert [record.batch_size for record in records] == [BATCH_SIZE, 2 * BATCH_SIZE]
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "#### Dataset 1" in readme
    assert "#### Dataset 2" in readme
    assert "drop last batch: True" in readme


def test_hub_location_pushed_after_training_shows(sampler_and_model, tmp_path):
    sampler, model = sampler_and_model
    add_b3_to_model_card(model, sampler)
    sampler.mined.metadata["hub"] = {"repo_id": "my-user/b3-orderings", "revision": "main",
                                     "commit": "0123456789abcdef", "path_in_repo": "wordnet-k8"}
    try:
        model.save_pretrained(str(tmp_path))
    finally:
        sampler.mined.metadata.pop("hub")

    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "Hub dataset [my-user/b3-orderings](https://huggingface.co/datasets/my-user/b3-orderings)" in readme
    assert "commit `0123456789abcdef`" in readme
    ordering = read_card_records(tmp_path)[0].ordering
    assert ordering == {"location": "hub", "repo_id": "my-user/b3-orderings", "revision": "main",
                        "commit": "0123456789abcdef", "path_in_repo": "wordnet-k8"}


def test_card_survives_pickle_and_deepcopy(sampler_and_model):
    sampler, model = sampler_and_model
    add_b3_to_model_card(model, sampler)

    restored = pickle.loads(pickle.dumps(model.model_card_data))
    copied = copy.deepcopy(model).model_card_data

    for card in (restored, copied):
        assert isinstance(card, B3ModelCardMixin)
        assert isinstance(card, type(model.model_card_data).__mro__[2])
        assert card.b3_records[0].fingerprint == sampler.mined.fingerprint
        assert B3_TAG in card.tags


def test_card_file_lists_package_version(sampler_and_model, tmp_path):
    from b3_st import __version__

    sampler, model = sampler_and_model
    add_b3_to_model_card(model, sampler)
    model.save_pretrained(str(tmp_path))

    payload = json.loads(Path(tmp_path, CARD_FILE).read_text(encoding="utf-8"))
    assert payload["b3_st_version"] == __version__
    assert payload["format_version"] == 1


def test_deleted_card_template_is_rewritten(sampler_and_model, tmp_path):
    sampler, model = sampler_and_model
    add_b3_to_model_card(model, sampler)
    Path(model.model_card_data.template_path).unlink()

    model.save_pretrained(str(tmp_path))

    assert "### Training Batches (B3)" in (tmp_path / "README.md").read_text(encoding="utf-8")


def test_dataset_dict_records_each_dataset(tiny_teacher_path, minilm_path, tmp_path):
    from datasets import DatasetDict

    train_dataset = DatasetDict({
        "definitions": load_wordnet(rows=TRAIN_ROWS, seed=0),
        "examples": load_wordnet("example_definition_train", rows=400, seed=0),
    })
    model = _student(minilm_path)
    args = B3TrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=BATCH_SIZE, max_steps=2, seed=TRAIN_SEED,
        report_to="none", save_strategy="no", use_cpu=True, b3_teacher=tiny_teacher_path,
        b3_skip_top=MINING["skip_top"], b3_window_size=MINING["window_size"], b3_cluster_size=MINING["cluster_size"],
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset,
                                         loss=MultipleNegativesRankingLoss(model))
    trainer.train()
    samplers = trainer._train_dataloader.batch_sampler.batch_samplers
    model.save_pretrained(str(tmp_path / "model"))

    records = read_card_records(tmp_path / "model")
    assert [record.rows for record in records] == [TRAIN_ROWS, 400]
    readme = (tmp_path / "model" / "README.md").read_text(encoding="utf-8")
    assert "#### Dataset 1" in readme
    assert "#### Dataset 2" in readme
    rebuilt = load_sampler_from_model(tmp_path / "model", train_dataset["examples"])
    assert rebuilt.epoch_batches(0) == samplers[1].epoch_batches(0)
    assert rebuilt.epoch_batches(1) == samplers[1].epoch_batches(1)


def test_card_record_keeps_hard_negative_settings():
    from b3_st.card_record import SamplerRecord
    from b3_st.card_section import render_section

    record = SamplerRecord(config={"teacher": "t", "skip_top": 30, "window_size": 100, "cluster_size": 8,
                                   "seed": 0, "edges": "mutual", "isolated_rows": "attach",
                                   "community_backend": "leiden"},
                           batch_size=64, drop_last=False, seed=0, fingerprint="f" * 64, rows=100,
                           anchor_column="anchor", positive_column="positive", hard_negatives=5,
                           hard_negative_source="row")
    restored = SamplerRecord.from_dict(record.to_dict())
    assert restored.hard_negatives == 5
    assert restored.hard_negative_source == "row"
    assert restored.same_sampler(record)

    section = render_section([record])
    assert "| B3++ hard negatives per row | 5, drawn from the rank windows of each row |" in section
    assert "hard_negatives=5, hard_negative_source='row'" in section
