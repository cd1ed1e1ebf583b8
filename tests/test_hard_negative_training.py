"""B3++ through SentenceTransformerTrainer: the collator's negative columns and short training runs."""

from __future__ import annotations

import pickle

import pytest
import torch
from datasets import DatasetDict
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from transformers import AutoTokenizer, BertConfig, BertModel, HfArgumentParser

from b3_st import B3BatchSampler, B3HardNegativeCollator, B3SamplerFactory, B3TrainingArguments
from b3_st.hard_negatives import HardNegativeLabelColumns
from conftest import load_wordnet

HARD_NEGATIVES = 2


@pytest.fixture(scope="module")
def tiny_bert_path(tmp_path_factory, minilm_path) -> str:
    """A randomly initialised one-layer BERT with MiniLM's tokenizer.

    CachedMultipleNegativesRankingLoss splits inputs into mini-batches, which a StaticEmbedding
    model does not allow, so the training tests use this small transformer as the student.
    """
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(1)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture()
def student(tiny_bert_path):
    return SentenceTransformer(modules=[Transformer(tiny_bert_path, max_seq_length=32), Pooling(16)], device="cpu")


@pytest.fixture(scope="module")
def train_dataset():
    return load_wordnet("definition_words_train", rows=2000, seed=2)


def _args(tmp_path, teacher, **overrides) -> B3TrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=32,
        max_steps=3,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        b3_teacher=teacher,
        b3_cluster_size=8,
        b3_skip_top=5,
        b3_window_size=20,
        b3_hard_negatives=HARD_NEGATIVES,
    )
    values.update(overrides)
    return B3TrainingArguments(**values)


class _RecordingPreprocess:
    """A preprocess_fn that records the texts and prompt of every column it tokenises."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, inputs: list[str], prompt: str | None = None, task: str | None = None) -> dict:
        self.calls.append((list(inputs), prompt))
        return {"input_ids": torch.zeros(len(inputs), 1, dtype=torch.long)}


def _features(batch_size: int, hard_negatives: int) -> list[dict[str, str]]:
    rows = [{"anchor": f"anchor {row}", "positive": f"positive {row}"} for row in range(batch_size)]
    negatives = [
        {"anchor": f"unused {row}.{number}", "positive": f"negative {row}.{number}"}
        for row in range(batch_size)
        for number in range(hard_negatives)
    ]
    return rows + negatives


def test_collator_moves_negatives_to_columns():
    collator = B3HardNegativeCollator(preprocess_fn=_RecordingPreprocess(), hard_negatives=2)
    rows = collator.move_negatives_to_columns(_features(3, 2))

    assert [list(row) for row in rows] == [["anchor", "positive", "negative_1", "negative_2"]] * 3
    assert [row["anchor"] for row in rows] == ["anchor 0", "anchor 1", "anchor 2"]
    assert [row["negative_1"] for row in rows] == ["negative 0.0", "negative 1.0", "negative 2.0"]
    assert [row["negative_2"] for row in rows] == ["negative 0.1", "negative 1.1", "negative 2.1"]


def test_negative_columns_use_positive_prompt():
    preprocess = _RecordingPreprocess()
    collator = B3HardNegativeCollator(
        preprocess_fn=preprocess, prompts={"anchor": "query: ", "positive": "document: "}, hard_negatives=2
    )
    batch = collator(_features(2, 2))

    assert sorted(batch) == ["anchor_input_ids", "negative_1_input_ids", "negative_2_input_ids", "positive_input_ids"]
    assert preprocess.calls == [
        (["anchor 0", "anchor 1"], "query: "),
        (["positive 0", "positive 1"], "document: "),
        (["negative 0.0", "negative 1.0"], "document: "),
        (["negative 0.1", "negative 1.1"], "document: "),
    ]


def test_collator_keeps_explicit_negative_prompt():
    preprocess = _RecordingPreprocess()
    collator = B3HardNegativeCollator(
        preprocess_fn=preprocess, prompts={"positive": "document: ", "negative_2": "other: "}, hard_negatives=2
    )
    collator(_features(1, 2))
    assert [prompt for _, prompt in preprocess.calls] == [None, "document: ", "document: ", "other: "]


def test_collator_reads_named_positive_column():
    collator = B3HardNegativeCollator(preprocess_fn=_RecordingPreprocess(), hard_negatives=1, positive_column="anchor")
    rows = collator.move_negatives_to_columns(_features(2, 1))
    assert [row["negative_1"] for row in rows] == ["unused 0.0", "unused 1.0"]


def test_collator_skips_label_columns_for_positive():
    collator = B3HardNegativeCollator(preprocess_fn=_RecordingPreprocess(), hard_negatives=1)
    features = [{"label": 1, "query": "q", "document": "d"}, {"label": 0, "query": "q2", "document": "hard"}]
    rows = collator.move_negatives_to_columns(features)
    assert rows == [{"label": 1, "query": "q", "document": "d", "negative_1": "hard"}]


def test_collator_without_negatives_matches_default():
    features = _features(3, 0)
    plain = B3HardNegativeCollator(preprocess_fn=_RecordingPreprocess())(features)
    assert sorted(plain) == ["anchor_input_ids", "positive_input_ids"]


@pytest.mark.parametrize(
    ("features", "collator_settings", "message"),
    [
        (_features(3, 2)[:-1], {}, "received 8 rows, which is not a batch plus 2 hard-negative rows per row"),
        ([{**row, "negative_1": "x"} for row in _features(1, 2)], {}, r"already has the column\(s\) \['negative_1'\]"),
        (_features(1, 2), {"positive_column": "document"}, "positive_column='document' is not a column"),
        ([{"anchor": "a"}] * 3, {}, "needs an anchor and a positive text column"),
    ],
)
def test_collator_rejects_invalid_input(features, collator_settings, message):
    collator = B3HardNegativeCollator(preprocess_fn=_RecordingPreprocess(), hard_negatives=2, **collator_settings)
    with pytest.raises(ValueError, match=message):
        collator(features)


def test_collator_tags_label_columns():
    collator = B3HardNegativeCollator(preprocess_fn=_RecordingPreprocess(), hard_negatives=3)
    assert isinstance(collator.valid_label_columns, HardNegativeLabelColumns)
    assert collator.valid_label_columns.hard_negatives == 3
    assert list(collator.valid_label_columns) == ["label", "labels", "score", "scores"]

    restored = pickle.loads(pickle.dumps(collator.valid_label_columns))
    assert restored.hard_negatives == 3
    assert list(restored) == list(collator.valid_label_columns)


def test_for_model_reads_sampler_factory(tmp_path, tiny_teacher_path, student):
    args = _args(tmp_path, tiny_teacher_path, b3_hard_negatives=4, b3_positive_column="positive",
                 prompts={"positive": "document: "})
    collator = B3HardNegativeCollator.for_model(student, args)
    assert collator.hard_negatives == 4
    assert collator.positive_column == "positive"
    assert collator.prompts == {"positive": "document: "}

    plain_args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "plain"), report_to=[])
    with pytest.raises(ValueError, match="not a B3 sampler"):
        B3HardNegativeCollator.for_model(student, plain_args)


def test_arguments_bind_hard_negatives(tmp_path, tiny_teacher_path):
    args = _args(tmp_path, tiny_teacher_path, b3_hard_negatives=5, b3_hard_negative_source="row")
    assert isinstance(args.batch_sampler, B3SamplerFactory)
    assert args.batch_sampler.hard_negatives == 5
    assert args.batch_sampler.hard_negative_source == "row"
    assert args.to_dict()["b3_hard_negatives"] == 5

    with pytest.raises(ValueError, match="hard_negative_source='cluster' is invalid"):
        _args(tmp_path, tiny_teacher_path, b3_hard_negative_source="cluster")


def test_arguments_parse_hard_negative_flags(tmp_path):
    parser = HfArgumentParser(B3TrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--b3_hard_negatives", "5", "--b3_hard_negative_source", "row"]
    )
    assert args.b3_hard_negatives == 5
    assert args.batch_sampler.hard_negatives == 5
    assert args.batch_sampler.hard_negative_source == "row"


def test_default_collator_is_rejected(tmp_path, tiny_teacher_path, student, train_dataset):
    trainer = SentenceTransformerTrainer(
        model=student,
        args=_args(tmp_path, tiny_teacher_path),
        train_dataset=train_dataset,
        loss=MultipleNegativesRankingLoss(student),
    )
    with pytest.raises(ValueError, match="does not expect them"):
        trainer.get_train_dataloader()


def test_collator_without_sampler_negatives_rejected(tmp_path, tiny_teacher_path, student, train_dataset):
    args = _args(tmp_path, tiny_teacher_path, b3_hard_negatives=0)
    collator = B3HardNegativeCollator(preprocess_fn=student.preprocess, hard_negatives=2)
    trainer = SentenceTransformerTrainer(
        model=student, args=args, train_dataset=train_dataset,
        loss=MultipleNegativesRankingLoss(student), data_collator=collator,
    )
    with pytest.raises(ValueError, match="expects 2 hard negatives per row but B3BatchSampler draws 0"):
        trainer.get_train_dataloader()


def test_dataloader_batches_carry_negatives(tmp_path, tiny_teacher_path, student, train_dataset):
    args = _args(tmp_path, tiny_teacher_path)
    trainer = SentenceTransformerTrainer(
        model=student, args=args, train_dataset=train_dataset,
        loss=MultipleNegativesRankingLoss(student), data_collator=B3HardNegativeCollator.for_model(student, args),
    )
    dataloader = trainer.get_train_dataloader()
    first = next(iter(dataloader))

    sampler = args.batch_sampler(train_dataset, batch_size=32, drop_last=False, seed=args.seed)
    batch = sampler.epoch_batches(0)[0]
    negatives = sampler.epoch_hard_negatives(0)[0]
    expected = {
        "anchor": student.preprocess([train_dataset[int(row)]["anchor"] for row in batch]),
        "positive": student.preprocess([train_dataset[int(row)]["positive"] for row in batch]),
    }
    for number in range(1, HARD_NEGATIVES + 1):
        texts = [train_dataset[int(row)]["positive"] for row in negatives[:, number - 1]]
        expected[f"negative_{number}"] = student.preprocess(texts)

    assert sorted(first) == sorted(f"{column}_{key}" for column in expected for key in expected[column])
    for column, tokenised in expected.items():
        for key, value in tokenised.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(first[f"{column}_{key}"], value), f"{column}_{key}"
            else:
                assert first[f"{column}_{key}"] == value, f"{column}_{key}"


@pytest.mark.slow
def test_dataloader_workers_give_same_negatives(tmp_path, tiny_teacher_path, student, train_dataset):
    collated = []
    for workers in (0, 2):
        args = _args(tmp_path, tiny_teacher_path, dataloader_num_workers=workers)
        trainer = SentenceTransformerTrainer(
            model=student, args=args, train_dataset=train_dataset,
            loss=MultipleNegativesRankingLoss(student), data_collator=B3HardNegativeCollator.for_model(student, args),
        )
        iterator = iter(trainer.get_train_dataloader())
        collated.append([next(iterator) for _ in range(3)])

    for single, parallel in zip(*collated):
        assert sorted(single) == sorted(parallel)
        for key in single:
            if isinstance(single[key], torch.Tensor):
                assert torch.equal(single[key], parallel[key]), key
            else:
                assert single[key] == parallel[key], key


@pytest.mark.slow
@pytest.mark.parametrize("source", ["batch", "row"])
@pytest.mark.parametrize("loss_class", [MultipleNegativesRankingLoss, CachedMultipleNegativesRankingLoss])
def test_training_runs_with_hard_negatives(tmp_path, tiny_teacher_path, student, train_dataset, loss_class, source):
    args = _args(tmp_path, tiny_teacher_path, b3_hard_negative_source=source)
    loss = loss_class(student) if loss_class is MultipleNegativesRankingLoss else loss_class(student, mini_batch_size=8)
    columns_seen: list[int] = []
    forward = loss.forward

    def recording_forward(sentence_features, labels):
        columns_seen.append(len(sentence_features))
        return forward(sentence_features, labels)

    loss.forward = recording_forward
    before = [parameter.detach().clone() for parameter in student.parameters()]

    trainer = SentenceTransformerTrainer(
        model=student, args=args, train_dataset=train_dataset, loss=loss,
        data_collator=B3HardNegativeCollator.for_model(student, args),
    )
    result = trainer.train()

    assert result.global_step == 3
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert columns_seen == [2 + HARD_NEGATIVES] * 3
    after = list(student.parameters())
    assert any(not torch.equal(old, new.detach()) for old, new in zip(before, after))


def test_plain_arguments_with_bound_sampler(tmp_path, tiny_teacher_path, student, train_dataset):
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=32, max_steps=1, report_to=[],
        save_strategy="no", use_cpu=True,
        batch_sampler=B3BatchSampler.bind(teacher=tiny_teacher_path, cluster_size=8, skip_top=5, window_size=20,
                                          hard_negatives=1),
    )
    trainer = SentenceTransformerTrainer(
        model=student, args=args, train_dataset=train_dataset,
        loss=MultipleNegativesRankingLoss(student), data_collator=B3HardNegativeCollator.for_model(student, args),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert "negative_1_input_ids" in batch
    assert "negative_2_input_ids" not in batch


def test_dataset_dict_negatives_stay_in_their_dataset(tmp_path, tiny_teacher_path, student):
    datasets = DatasetDict({
        "definitions": load_wordnet("definition_words_train", rows=800, seed=4),
        "examples": load_wordnet("example_definition_train", rows=600, seed=4),
    })
    args = _args(tmp_path, tiny_teacher_path, max_steps=4)
    # A loss per dataset makes the trainer add a dataset_name column, which the collator must keep.
    losses = {name: MultipleNegativesRankingLoss(student) for name in datasets}
    trainer = SentenceTransformerTrainer(
        model=student, args=args, train_dataset=datasets, loss=losses,
        data_collator=B3HardNegativeCollator.for_model(student, args),
    )

    offset = 800
    dataloader = trainer.get_train_dataloader()
    for rows in dataloader.batch_sampler:
        assert all(index < offset for index in rows) or all(index >= offset for index in rows)
        assert len(rows) % (1 + HARD_NEGATIVES) == 0

    batch = next(iter(dataloader))
    assert batch["dataset_name"] in datasets
    assert "negative_2_input_ids" in batch
    assert trainer.train().global_step == 4
