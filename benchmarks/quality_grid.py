"""List, and optionally run, the cells of the quality benchmark that have no result yet.

The grid is the set of cells that docs/benchmarks.md reports on. The static student runs every
method at batch sizes 32 to 512 on both WordNet tasks with three seeds, at one learning rate. A
rate check reruns its random and B3 batches of 64 and 256 on the definition task at four other
rates (seed 0), to show whether their comparison depends on that rate. The 3-layer MiniLM student
runs four methods at 32, 64 and 256 on a 20,000-row subset of the definition task with two seeds,
each batch size at its own learning rate. That rate is tuned on random batches with seed 0: it is
the rate at which they scored best. While that rate is the highest or lowest tried, the grid first
lists a random-batch cell at twice or half of it. The grid therefore moves as results land, and
later seeds do not move it. A cell counts as done when the results file has a run with the same
task, student, method, batch size, seed and learning rate, the default mining settings and no
ablation tag.

Without ``--run`` the script prints how much of the grid is done and one ``quality.py`` command per
missing cell. With ``--run`` it runs the missing cells one after another. Each appends its result
as it finishes, so the script can be stopped at any point and started again later.

    python benchmarks/quality_grid.py
    python benchmarks/quality_grid.py --student static --task example --run --limit 10
    python benchmarks/quality_grid.py --student minilm3 --run --device cuda:0
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("quality_grid")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "quality.jsonl"
# quality.py's learning rate per student when --learning-rate is not given. Runs at any other rate
# carry a tag such as lr4e-4. A test checks that quality.py uses the same rates.
DEFAULT_LEARNING_RATES = {"static": 0.2, "minilm3": 5e-5}
STATIC_LEARNING_RATE = DEFAULT_LEARNING_RATES["static"]
STATIC_BATCH_SIZES = [32, 64, 128, 256, 512]
STATIC_CHECK_RATES = [0.1, 0.4, 0.05, 0.8]
# Starting learning rates of the transformer student per batch size, used until random batches
# have run at that size. tuned_learning_rates() replaces them.
MINILM3_LEARNING_RATES = {32: 1e-4, 64: 2e-4, 256: 4e-4}
MINILM3_TRAIN_ROWS = 20_000
LEARNING_RATE_TAG = re.compile(r"lr[0-9.e+-]+")
# quality.py's mining settings when no ablation option is given. Grid cells use them all.
DEFAULT_MINING = {"skip_top": 30, "window_size": 100, "cluster_size": 8, "edges": "mutual", "isolated_rows": "attach",
                  "relative_margin": None}


def same_rate(first: float, second: float) -> bool:
    """Return whether two learning rates are equal up to float rounding."""
    return abs(first - second) <= 1e-12


def is_grid_run(record: dict) -> bool:
    """Return whether ``record`` (one line of the results file) ran with the grid's settings.

    Those are the default mining settings and no tag other than a learning rate such as lr4e-4.
    """
    tag = record.get("tag", "")
    if tag and not LEARNING_RATE_TAG.fullmatch(tag):
        return False
    return all(record.get(key, value) == value for key, value in DEFAULT_MINING.items())


def format_rate(rate: float) -> str:
    """Write a learning rate as the tags in the results do: 1e-4, 2e-4, 1.5e-4."""
    mantissa, exponent = f"{rate:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: what ``quality.py`` trains and under which learning rate."""

    task: str
    student: str
    method: str
    batch_size: int
    seed: int
    learning_rate: float
    train_rows: int | None = None

    @property
    def tag(self) -> str:
        """The tag quality.py records: the learning rate when it is not the student's default."""
        if self.learning_rate != DEFAULT_LEARNING_RATES[self.student]:
            return f"lr{format_rate(self.learning_rate)}"
        return ""

    def arguments(self) -> list[str]:
        """Return the quality.py arguments that run this cell."""
        arguments = ["--task", self.task, "--student", self.student, "--method", self.method,
                     "--batch-size", str(self.batch_size), "--seed", str(self.seed)]
        if self.train_rows is not None:
            arguments += ["--train-rows", str(self.train_rows)]
        if self.tag:
            arguments += ["--learning-rate", format_rate(self.learning_rate), "--tag", self.tag]
        return arguments

    def matches(self, record: dict) -> bool:
        """Return whether ``record`` (one line of the results file) is a run of this cell."""
        if not is_grid_run(record):
            return False
        if self.train_rows is not None and record["train_rows"] != self.train_rows:
            return False
        return (record["task"], record["student"], record["method"], record["batch_size"], record["seed"]) == (
            self.task, self.student, self.method, self.batch_size, self.seed
        ) and same_rate(record["learning_rate"], self.learning_rate)


def _random_scores_by_rate(records: list[dict]) -> dict[int, dict[float, list[float]]]:
    """Collect NDCG@10 of the transformer student's seed-0 random-batch runs per batch size and learning rate.

    Only seed 0 counts, so that a second seed cannot move the tuned rate after the other methods ran at it.
    """
    scores: dict[int, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if not is_grid_run(record):
            continue
        if record["seed"] != 0:
            continue
        if (record["task"], record["student"], record["method"]) != ("definition", "minilm3", "random"):
            continue
        if record["train_rows"] != MINILM3_TRAIN_ROWS:
            continue
        scores[record["batch_size"]][record["learning_rate"]].append(record["ndcg@10"])
    return scores


def _best_rate(scores: dict[float, list[float]]) -> float:
    return max(scores, key=lambda rate: statistics.mean(scores[rate]))


def tuned_learning_rates(records: list[dict]) -> dict[int, float]:
    """Pick the transformer student's learning rate per batch size from the random-batch runs.

    The rate is the one at which random batches with seed 0 scored the best NDCG@10. Tuning the
    baseline rather than B3 means B3 is compared with the best random batches found. Batch sizes without
    random-batch runs keep ``MINILM3_LEARNING_RATES``.
    """
    rates = dict(MINILM3_LEARNING_RATES)
    for batch_size, scores in _random_scores_by_rate(records).items():
        if batch_size in rates:
            rates[batch_size] = _best_rate(scores)
    return rates


def tuning_cells(records: list[dict]) -> list[Cell]:
    """Return random-batch cells that test the next learning rate beyond the best one tried.

    A best rate that is the highest tried may not be the peak, so the next cell doubles it. One
    that is the lowest of several tried halves it.
    """
    cells = []
    for batch_size, scores in sorted(_random_scores_by_rate(records).items()):
        if batch_size not in MINILM3_LEARNING_RATES:
            continue
        best = _best_rate(scores)
        if best == max(scores):
            next_rate = best * 2
        elif best == min(scores):
            next_rate = best / 2
        else:
            continue
        cells.append(Cell("definition", "minilm3", "random", batch_size, 0, next_rate, MINILM3_TRAIN_ROWS))
    return cells


def grid_learning_rates(student: str, records: list[dict]) -> dict[int, float]:
    """Return the learning rate the grid runs each batch size of ``student`` at."""
    if student == "static":
        return {batch_size: STATIC_LEARNING_RATE for batch_size in STATIC_BATCH_SIZES}
    return tuned_learning_rates(records)


def grid(records: list[dict] | None = None) -> list[Cell]:
    """Return every cell of the quality benchmark's grid, static student first.

    With ``records`` the transformer student's cells use the tuned learning rates, and the
    learning-rate cells still to try come before them. Without, they use the starting rates.
    """
    records = records or []
    cells = [
        Cell(task, "static", method, batch_size, seed, STATIC_LEARNING_RATE)
        for task, method, batch_size, seed in itertools.product(
            ["definition", "example"], ["random", "b3", "b3pp1", "b3pp5", "hn1", "hn5"], STATIC_BATCH_SIZES, [0, 1, 2])
    ]
    cells += [
        Cell("definition", "static", method, batch_size, 0, rate)
        for rate, batch_size, method in itertools.product(STATIC_CHECK_RATES, [64, 256], ["random", "b3"])
    ]

    rates = grid_learning_rates("minilm3", records)
    cells += tuning_cells(records)
    cells += [
        Cell("definition", "minilm3", method, batch_size, seed, rates[batch_size], MINILM3_TRAIN_ROWS)
        for method, batch_size, seed in itertools.product(["random", "b3", "b3pp1", "hn1"], [32, 64, 256], [0, 1])
    ]
    return cells


def load_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def missing_cells(cells: list[Cell], records: list[dict]) -> list[Cell]:
    """Return the cells of ``cells`` that no record in ``records`` is a run of."""
    return [cell for cell in cells if not any(cell.matches(record) for record in records)]


def coverage(cells: list[Cell], records: list[dict]) -> dict[tuple[str, str], tuple[int, int]]:
    """Count done and planned cells per (task, student)."""
    missing = Counter((cell.task, cell.student) for cell in missing_cells(cells, records))
    planned = Counter((cell.task, cell.student) for cell in cells)
    return {key: (count - missing[key], count) for key, count in planned.items()}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="JSON lines file quality.py appends to.")
    parser.add_argument("--task", choices=["definition", "example"], default=None, help="Only this task's cells.")
    parser.add_argument("--student", choices=["static", "minilm3"], default=None, help="Only this student's cells.")
    parser.add_argument("--run", action="store_true", help="Run the missing cells instead of listing them.")
    parser.add_argument("--limit", type=int, default=None, help="Run or list at most this many missing cells.")
    parser.add_argument("--device", default=None, help="Passed to quality.py, e.g. cuda:0.")
    return parser.parse_args()


def _selected_cells(arguments: argparse.Namespace, records: list[dict]) -> list[Cell]:
    """Return the grid's cells for the ``--task`` and ``--student`` options."""
    return [cell for cell in grid(records)
            if arguments.task in (None, cell.task) and arguments.student in (None, cell.student)]


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    arguments = parse_arguments()
    results = Path(arguments.results)
    extra = [] if results.resolve() == DEFAULT_RESULTS else ["--results", str(results)]
    extra += ["--device", arguments.device] if arguments.device else []

    records = load_records(results)
    cells = _selected_cells(arguments, records)
    for (task, student), (done, planned) in coverage(cells, records).items():
        print(f"{task} task, {student} student: {done} of {planned} cells done")
    if not arguments.run:
        for cell in missing_cells(cells, records)[: arguments.limit]:
            print(" ".join(["python", "benchmarks/quality.py", *cell.arguments(), *extra]))
        return

    # Each result can change the tuned learning rates, so the missing cells are listed again after
    # every run. A cell runs at most once per invocation, even when it failed or its record does
    # not match it, so the loop ends.
    attempted: set[Cell] = set()
    while arguments.limit is None or len(attempted) < arguments.limit:
        records = load_records(results)
        todo = [cell for cell in missing_cells(_selected_cells(arguments, records), records) if cell not in attempted]
        if not todo:
            break
        cell = todo[0]
        attempted.add(cell)
        logger.info("Cell %d, %d missing: %s", len(attempted), len(todo), " ".join(cell.arguments()))

        command = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), *cell.arguments(), *extra]
        completed = subprocess.run(command, cwd=ROOT, check=False)
        if completed.returncode != 0:
            logger.error("quality.py failed with exit code %d for %s (its output is above). Running the next cell.",
                         completed.returncode, " ".join(cell.arguments()))


if __name__ == "__main__":
    main()
