import math

import pytest
import torch
from datasets import DatasetDict
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.modules import StaticEmbedding
from transformers import AutoTokenizer, HfArgumentParser

from b3_st import B3BatchSampler, B3SamplerFactory, B3TrainingArguments
from conftest import load_wordnet


@pytest.fixture()
def student(minilm_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    weights = torch.randn(tokenizer.vocab_size, 16, generator=torch.Generator().manual_seed(1))
    return SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu")


def _args(tmp_path, teacher, **overrides):
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
        b3_cache_dir=str(tmp_path / "cache"),
    )
    values.update(overrides)
    return B3TrainingArguments(**values)


def test_arguments_bind_sampler_from_fields(tmp_path, tiny_teacher_path):
    args = _args(tmp_path, tiny_teacher_path, b3_skip_top=10, b3_window_size=40)
    assert isinstance(args.batch_sampler, B3SamplerFactory)
    assert args.batch_sampler.config.skip_top == 10
    assert args.batch_sampler.config.window_size == 40
    assert args.b3_config().teacher == tiny_teacher_path


def test_arguments_serialise_b3_fields(tmp_path, tiny_teacher_path):
    args = _args(tmp_path, tiny_teacher_path, b3_cluster_size=4)
    values = args.to_dict()
    assert values["b3_cluster_size"] == 4
    assert values["b3_teacher"] == tiny_teacher_path
    assert "batch_sampler" not in values  # sentence-transformers drops callables from to_dict
    torch.save(args, tmp_path / "training_args.bin")
    restored = torch.load(tmp_path / "training_args.bin", weights_only=False)
    assert restored.batch_sampler == args.batch_sampler


def test_arguments_parse_from_command_line(tmp_path):
    parser = HfArgumentParser(B3TrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--b3_skip_top", "20", "--b3_cluster_size", "4",
         "--b3_teacher", "some/teacher", "--b3_edges", "all", "--use_cpu", "true"]
    )
    assert args.b3_skip_top == 20
    assert args.batch_sampler.config.cluster_size == 4
    assert args.batch_sampler.config.edges == "all"
    assert args.batch_sampler.config.teacher == "some/teacher"


def test_arguments_reject_other_batch_sampler(tmp_path):
    with pytest.raises(ValueError, match="Leave batch_sampler at its default"):
        B3TrainingArguments(output_dir=str(tmp_path), batch_sampler="no_duplicates", use_cpu=True)


def test_arguments_reject_invalid_b3_field(tmp_path):
    with pytest.raises(ValueError, match="edges='both' is invalid"):
        B3TrainingArguments(output_dir=str(tmp_path), b3_edges="both", use_cpu=True)


def test_trainer_trains_on_b3_batches(tmp_path, tiny_teacher_path, student):
    dataset = load_wordnet(rows=1000, seed=2)
    args = _args(tmp_path, tiny_teacher_path)
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(student))

    batch_sampler = trainer.get_train_dataloader().batch_sampler
    assert isinstance(batch_sampler, B3BatchSampler)
    assert len(batch_sampler) == -(-1000 // 32)

    output = trainer.train()
    assert output.global_step == 3
    assert math.isfinite(output.training_loss)


def test_plain_arguments_accept_bound_sampler(tmp_path, tiny_teacher_path, student):
    dataset = load_wordnet(rows=1000, seed=3)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=32, max_steps=2, report_to=[],
        save_strategy="no", use_cpu=True,
        batch_sampler=B3BatchSampler.bind(teacher=tiny_teacher_path, cache_dir=str(tmp_path / "cache")),
    )
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(student))
    assert isinstance(trainer.get_train_dataloader().batch_sampler, B3BatchSampler)
    assert trainer.train().global_step == 2


def test_dataset_dict_mines_each_dataset(tmp_path, tiny_teacher_path, student):
    datasets = DatasetDict({
        "definitions": load_wordnet("definition_words_train", rows=800, seed=4),
        "examples": load_wordnet("example_definition_train", rows=600, seed=4),
    })
    args = _args(tmp_path, tiny_teacher_path, max_steps=4)
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=datasets,
                                         loss=MultipleNegativesRankingLoss(student))

    batch_sampler = trainer.get_train_dataloader().batch_sampler
    samplers = batch_sampler.batch_samplers
    assert [type(sampler) for sampler in samplers] == [B3BatchSampler, B3BatchSampler]
    assert [sampler.mined.rows for sampler in samplers] == [800, 600]
    assert samplers[0].mined.fingerprint != samplers[1].mined.fingerprint

    offset = 800
    for batch in batch_sampler:
        assert all(index < offset for index in batch) or all(index >= offset for index in batch)
    assert trainer.train().global_step == 4
