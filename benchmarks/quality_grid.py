"""List, and optionally run, the cells of the quality benchmark that have no result yet.

The grid is the set of cells that docs/benchmarks.md reports on. The static student runs every
method at batch sizes 32 to 512 on both WordNet tasks with three seeds. The 3-layer MiniLM student
runs four methods at 32, 64 and 256 on a 20,000-row subset of the definition task with two seeds,
each batch size at its own learning rate. A cell counts as done when the results file has a run
with the same task, student, method, batch size, seed and learning rate and no ablation tag.

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
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("quality_grid")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "quality.jsonl"
STATIC_LEARNING_RATE = 0.2
# Learning rate of the transformer student per batch size: the best of those tried for random and
# B3 batches (see the learning-rate table in docs/benchmarks.md). 5e-5 is quality.py's default.
MINILM3_LEARNING_RATES = {32: 1e-4, 64: 2e-4, 256: 4e-4}
MINILM3_DEFAULT_LEARNING_RATE = 5e-5
MINILM3_TRAIN_ROWS = 20_000
LEARNING_RATE_TAG = re.compile(r"lr[0-9.e+-]+")


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
        if self.student == "minilm3" and self.learning_rate != MINILM3_DEFAULT_LEARNING_RATE:
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
        tag = record.get("tag", "")
        if tag and not LEARNING_RATE_TAG.fullmatch(tag):
            return False
        if self.train_rows is not None and record["train_rows"] != self.train_rows:
            return False
        return (record["task"], record["student"], record["method"], record["batch_size"], record["seed"]) == (
            self.task, self.student, self.method, self.batch_size, self.seed
        ) and abs(record["learning_rate"] - self.learning_rate) <= 1e-12


def grid() -> list[Cell]:
    """Return every cell of the quality benchmark's grid, static student first."""
    cells = [
        Cell(task, "static", method, batch_size, seed, STATIC_LEARNING_RATE)
        for task, method, batch_size, seed in itertools.product(
            ["definition", "example"], ["random", "b3", "b3pp1", "b3pp5", "hn1", "hn5"],
            [32, 64, 128, 256, 512], [0, 1, 2])
    ]
    cells += [
        Cell("definition", "minilm3", method, batch_size, seed, MINILM3_LEARNING_RATES[batch_size], MINILM3_TRAIN_ROWS)
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


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    arguments = parse_arguments()
    results = Path(arguments.results)

    cells = [cell for cell in grid()
             if arguments.task in (None, cell.task) and arguments.student in (None, cell.student)]
    records = load_records(results)
    for (task, student), (done, planned) in coverage(cells, records).items():
        print(f"{task} task, {student} student: {done} of {planned} cells done")

    todo = missing_cells(cells, records)[: arguments.limit]
    extra = [] if results.resolve() == DEFAULT_RESULTS else ["--results", str(results)]
    extra += ["--device", arguments.device] if arguments.device else []
    for number, cell in enumerate(todo, start=1):
        if not arguments.run:
            print(" ".join(["python", "benchmarks/quality.py", *cell.arguments(), *extra]))
            continue

        logger.info("Cell %d of %d: %s", number, len(todo), " ".join(cell.arguments()))
        command = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), *cell.arguments(), *extra]
        completed = subprocess.run(command, cwd=ROOT, check=False)
        if completed.returncode != 0:
            logger.error("quality.py failed with exit code %d for %s (its output is above). Running the next cell.",
                         completed.returncode, " ".join(cell.arguments()))


if __name__ == "__main__":
    main()
