"""Summarise quality benchmark results into tables and plots in docs/benchmarks.md.

Reads the JSON lines that ``quality.py`` appends, averages NDCG@10 over seeds for each task,
student, method, batch size and ablation tag, writes one PNG per (task, student) with NDCG@10
against batch size, one line per method, and replaces the part of docs/benchmarks.md between
the quality markers.

    python benchmarks/report_quality.py
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from quality_grid import (DEFAULT_LEARNING_RATES, LEARNING_RATE_TAG, coverage, format_rate, grid, grid_learning_rates,
                          load_records, same_rate)

ROOT = Path(__file__).resolve().parent.parent
START_MARKER = "<!-- quality results: start -->"
END_MARKER = "<!-- quality results: end -->"
METHOD_NAMES = {
    "random": "random (no duplicates)",
    "b3": "B3",
    "b3pp1": "B3++ h=1",
    "b3pp3": "B3++ h=3",
    "b3pp5": "B3++ h=5",
    "hn1": "random + 1 mined negative",
    "hn5": "random + 5 mined negatives",
}


def group(records: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        key = (record["task"], record["student"], record.get("tag", ""), record["method"], record["batch_size"],
               record["train_rows"])
        groups[key].append(record)
    return groups


def summarise(runs: list[dict]) -> tuple[float, float, int]:
    scores = [run["ndcg@10"] for run in runs]
    spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return statistics.mean(scores), spread, len(scores)


def format_spread(spread: float, count: int) -> str:
    """Write the standard deviation over seeds, or a dash for one seed, which has none."""
    return f"{spread:.4f}" if count > 1 else "-"


def _runs_by_rate(groups: dict[tuple, list[dict]], task: str, student: str) -> dict[tuple, dict[float, list[dict]]]:
    """Group the runs of each (method, batch size, rows) by learning rate.

    Untagged cells and cells tagged with a learning rate only (``lr1e-4``) count, so each method
    can be read at every learning rate it was run with.
    """
    by_rate: dict[tuple, dict[float, list[dict]]] = defaultdict(dict)
    for key, runs in groups.items():
        if key[0] != task or key[1] != student or (key[2] and not LEARNING_RATE_TAG.fullmatch(key[2])):
            continue
        by_rate[(key[3], key[4], key[5])][runs[0]["learning_rate"]] = runs
    return by_rate


def _draw(axis, lines: dict[str, list[tuple[int, float, float]]], title: str) -> None:
    for method in METHOD_NAMES:
        if method not in lines:
            continue
        points = sorted(lines[method])
        axis.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                      marker="o", capsize=3, label=METHOD_NAMES[method],
                      color=f"C{list(METHOD_NAMES).index(method)}")
    axis.set_xscale("log", base=2)
    sizes = sorted({point[0] for points in lines.values() for point in points})
    axis.set_xticks(sizes, [str(size) for size in sizes])
    axis.set_xlabel("batch size")
    axis.set_ylabel("NDCG@10")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)


def _runs_at_grid_rates(by_rate: dict[tuple, dict[float, list[dict]]],
                        grid_rates: dict[int, float]) -> dict[tuple[str, int], list[dict]]:
    """Return the runs of each (method, batch size) at the learning rate the grid gives that batch size.

    Reading every method at one rate per batch size, chosen on random batches, keeps a method that
    was tried at more rates from looking better by picking its luckiest one.
    """
    selected: dict[tuple[str, int], list[dict]] = {}
    for (method, batch_size, _), rates in by_rate.items():
        if batch_size not in grid_rates:
            continue
        runs = next((runs for rate, runs in rates.items() if same_rate(rate, grid_rates[batch_size])), None)
        if runs and len(runs) > len(selected.get((method, batch_size), [])):
            selected[(method, batch_size)] = runs
    return selected


def _grid_rates_differ(student: str, grid_rates: dict[int, float]) -> bool:
    """Return whether the grid runs some batch size of ``student`` at a rate other than its default."""
    return any(rate != DEFAULT_LEARNING_RATES[student] for rate in grid_rates.values())


def plot(groups: dict[tuple, list[dict]], by_rate: dict[tuple, dict[float, list[dict]]], grid_rates: dict[int, float],
         task: str, student: str, output: Path) -> bool:
    """Plot NDCG@10 against batch size, one line per method.

    A second panel reads each cell at the grid's learning rate for its batch size when that is not
    the student's default rate.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    default: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for (g_task, g_student, tag, method, batch_size, _), runs in groups.items():
        if g_task == task and g_student == student and not tag:
            mean, spread, _ = summarise(runs)
            default[method].append((batch_size, mean, spread))
    if not default:
        return False

    tuned: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for (method, batch_size), runs in _runs_at_grid_rates(by_rate, grid_rates).items():
        mean, spread, _ = summarise(runs)
        tuned[method].append((batch_size, mean, spread))
    two_panels = _grid_rates_differ(student, grid_rates) and bool(tuned)

    figure, axes = plt.subplots(1, 2 if two_panels else 1, figsize=(11 if two_panels else 6, 4), squeeze=False)
    title = f"WordNet {task} task, {student} student"
    _draw(axes[0][0], default, title + ("\ndefault learning rate" if two_panels else ""))
    if two_panels:
        _draw(axes[0][1], tuned, title + "\nlearning rate tuned per batch size")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return True


def _main_table(groups: dict[tuple, list[dict]], task: str, student: str) -> list[str]:
    lines = ["| method | batch size | train rows | texts per row | NDCG@10 mean | spread (stdev) | seeds | train s | prep s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    keys = sorted((key for key in groups if key[0] == task and key[1] == student and not key[2]),
                  key=lambda key: (list(METHOD_NAMES).index(key[3]) if key[3] in METHOD_NAMES else 99, key[4]))
    for key in keys:
        runs = groups[key]
        mean, spread, count = summarise(runs)
        train_seconds = statistics.mean(run["train_seconds"] for run in runs)
        preparation = statistics.mean(run["preparation_seconds"] for run in runs)
        texts = 2 + runs[0].get("hard_negatives", 0)
        lines.append(f"| {METHOD_NAMES.get(key[3], key[3])} | {key[4]} | {key[5]} | {texts} | {mean:.4f} | "
                     f"{format_spread(spread, count)} | {count} | {train_seconds:.0f} | {preparation:.0f} |")
    return lines


def _ablation_table(groups: dict[tuple, list[dict]], task: str, student: str) -> list[str]:
    """Tagged cells next to the untagged cells of the same method, batch size and seeds."""
    tagged = [runs for key, runs in groups.items() if key[0] == task and key[1] == student and key[2]]
    if not tagged:
        return []
    compared = {(runs[0]["method"], runs[0]["batch_size"], runs[0]["train_rows"]) for runs in tagged}
    seeds = {run["seed"] for runs in tagged for run in runs}
    base = [
        [run for run in runs if run["seed"] in seeds]
        for key, runs in sorted(groups.items())
        if key[0] == task and key[1] == student and not key[2] and (key[3], key[4], key[5]) in compared
    ]
    rows = [("default", runs) for runs in base if runs] + [(runs[0]["tag"], runs) for runs in tagged]

    lines = ["| ablation | method | batch size | train rows | learning rate | p | m | K | edges | isolated rows | relative margin | "
             "NDCG@10 | spread (stdev) | seeds | hardness B3 / random (at batch size) | rows in full clusters | mining s |",
             "|" + " --- |" * 17]
    for name, runs in rows:
        first = runs[0]
        mean, spread, count = summarise(runs)
        hardness = "-"
        if first.get("hardness_b3") is not None:
            hardness = f"{first['hardness_b3']:.3f} / {first['hardness_random']:.3f}"
            if first.get("hardness_batch_size") is not None:
                hardness += f" (at {first['hardness_batch_size']})"
        full = first.get("rows_in_full_clusters_share")
        mining = (first.get("mining_seconds") or {}).get("mining_after_encode")
        margin = first.get("relative_margin")
        settings = [first["skip_top"], first["window_size"], first["cluster_size"], first["edges"],
                    first["isolated_rows"], "-" if margin is None else margin]
        if first["method"].startswith("hn"):
            # mine_hard_negatives uses p and m as its rank range and ignores the graph settings.
            settings = settings[:2] + ["-"] * (len(settings) - 2)
        elif not first["method"].startswith("b3"):
            settings = ["-"] * len(settings)
        lines.append(
            f"| {name} | {METHOD_NAMES.get(first['method'], first['method'])} | {first['batch_size']} | "
            f"{first['train_rows']} | {first['learning_rate']:g} | " + " | ".join(str(value) for value in settings)
            + f" | {mean:.4f} | {format_spread(spread, count)} | {count} | {hardness} | {f'{full:.3f}' if full is not None else '-'} | "
            f"{f'{mining:.0f}' if mining is not None else '-'} |"
        )
    return lines


def _learning_rate_table(by_rate: dict[tuple, dict[float, list[dict]]], default_rate: float) -> list[str]:
    """Build a table of NDCG@10 per method and batch size, one column per learning rate tried.

    Rows that ran at the default rate only are left to the main table.
    """
    rows = {key: rates for key, rates in by_rate.items() if set(rates) != {default_rate}}
    if not rows:
        return []

    columns = sorted({rate for rates in rows.values() for rate in rates})
    lines = ["| method | batch size | train rows | " + " | ".join(f"lr {format_rate(rate)}" for rate in columns) + " |",
             "|" + " --- |" * (len(columns) + 3)]
    order = sorted(rows, key=lambda key: (key[1], list(METHOD_NAMES).index(key[0]) if key[0] in METHOD_NAMES else 99))
    for method, batch_size, train_rows in order:
        rates = {rate: summarise(runs) for rate, runs in by_rate[(method, batch_size, train_rows)].items()}
        best = max(rates, key=lambda rate: rates[rate][0])
        cells = []
        for rate in columns:
            if rate not in rates:
                cells.append("-")
                continue
            mean, _, count = rates[rate]
            text = f"{mean:.4f} ({count})"
            cells.append(f"**{text}**" if rate == best and len(rates) > 1 else text)
        lines.append(f"| {METHOD_NAMES.get(method, method)} | {batch_size} | {train_rows} | " + " | ".join(cells) + " |")
    return lines


def _pooled_seed_spread(by_rate: dict[tuple, dict[float, list[dict]]]) -> float | None:
    """Estimate the standard deviation between seeds, pooled over every cell with more than one seed.

    Single-seed cells have no spread of their own, so comparisons use this one estimate for both sides.
    """
    squares, degrees_of_freedom = 0.0, 0
    for rates in by_rate.values():
        for runs in rates.values():
            if len(runs) > 1:
                squares += statistics.variance([run["ndcg@10"] for run in runs]) * (len(runs) - 1)
                degrees_of_freedom += len(runs) - 1
    return (squares / degrees_of_freedom) ** 0.5 if degrees_of_freedom else None


def _comparison_pairs(sizes: list[int]) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """List (B3 side, compared side) pairs as (method, batch size).

    B3 at 64 meets random batches at 256 and at 64. Then, at every batch size, B3 (2 texts per row)
    meets one mined negative (3 texts), and B3++ meets the same number of mined negatives.
    """
    pairs = [(("b3", 64), ("random", 256)), (("b3", 64), ("random", 64))]
    for size in sizes:
        pairs += [(("b3", size), ("hn1", size)), (("b3pp1", size), ("hn1", size)), (("b3pp5", size), ("hn5", size))]
    return pairs


def _comparison_table(by_rate: dict[tuple, dict[float, list[dict]]], grid_rates: dict[int, float]) -> list[str]:
    """Compare B3 cells with random and mined-negative cells, each read at the grid's learning rate.

    A difference counts as above or below only when it exceeds twice its standard error, with the
    pooled seed spread standing in for each cell's own.
    """
    spread = _pooled_seed_spread(by_rate)
    cells = {key: summarise(runs) for key, runs in _runs_at_grid_rates(by_rate, grid_rates).items()}
    pairs = [pair for pair in _comparison_pairs(sorted({size for _, size in cells}))
             if pair[0] in cells and pair[1] in cells]
    if spread is None or not pairs:
        return []

    several_rates = len(set(grid_rates.values())) > 1
    lines = ["| B3 side | NDCG@10 (seeds) | compared with | NDCG@10 (seeds) | difference | 2 standard errors | reading |",
             "|" + " --- |" * 7]
    for left, right in pairs:
        (left_mean, _, left_count), (right_mean, _, right_count) = cells[left], cells[right]
        difference = left_mean - right_mean
        noise = 2 * spread * (1 / left_count + 1 / right_count) ** 0.5
        reading = "within noise"
        if difference > noise:
            reading = "above"
        elif difference < -noise:
            reading = "below"
        names = [f"{METHOD_NAMES[method]} at {size}" + (f", lr {format_rate(grid_rates[size])}" if several_rates else "")
                 for method, size in (left, right)]
        lines.append(f"| {names[0]} | {left_mean:.4f} ({left_count}) | {names[1]} | {right_mean:.4f} ({right_count}) | "
                     f"{difference:+.4f} | {noise:.4f} | {reading} |")
    return lines


def _comparison_intro(task: str, student: str, by_rate: dict[tuple, dict[float, list[dict]]],
                      grid_rates: dict[int, float], count: int) -> str:
    """Explain how the comparison table reads a difference, with the numbers it used."""
    text = (f"B3 against the other methods ({task} task, {student} student). A difference counts as above or below "
            "only beyond two standard errors, 2 s sqrt(1/n1 + 1/n2), where n1 and n2 are the seed counts and s is the "
            f"seed standard deviation pooled over every cell with several seeds ({_pooled_seed_spread(by_rate):.4f}). "
            "The test treats the two cells as independent, which is conservative where they share seeds, and it "
            f"covers seed noise only, on one fixed set of test queries. With {count} comparisons, about one reading "
            "of above or below in twenty can come from chance.")
    if _grid_rates_differ(student, grid_rates):
        listed = ", ".join(f"{format_rate(rate)} at {size}" for size, rate in sorted(grid_rates.items()))
        text += (f" Every method is read at the learning rate the grid gives its batch size ({listed}). That is "
                 "the rate at which random batches with seed 0 scored best, and runs at other rates do not enter.")
    return text


def _mining_table(records: list[dict]) -> list[str]:
    """Seconds per mining stage of each default B3 ordering the cells used."""
    stages = ("encode", "search", "graph", "communities", "clusters", "statistics")
    seen: dict[tuple, dict] = {}
    for record in records:
        seconds = record.get("mining_seconds")
        if record["method"] != "b3" or record.get("tag") or not seconds:
            continue
        seen.setdefault((record["task"], record["train_rows"]), seconds)
    if not seen:
        return []

    lines = ["| task | rows | " + " | ".join(stages) + " | after encoding |",
             "|" + " --- |" * (len(stages) + 3)]
    for (task, rows), seconds in sorted(seen.items()):
        cells = " | ".join(f"{seconds.get(stage, 0.0):.1f}" for stage in stages)
        lines.append(f"| {task} | {rows} | {cells} | {seconds.get('mining_after_encode', 0.0):.1f} |")
    return lines


def _coverage_table(records: list[dict]) -> list[str]:
    """Count the cells of the planned grid (quality_grid.py) that have a result, per task and student."""
    lines = ["| task | student | cells done | cells planned |", "| --- | --- | --- | --- |"]
    for (task, student), (done, planned) in coverage(grid(records), records).items():
        lines.append(f"| {task} | {student} | {done} | {planned} |")
    return lines


def markdown(groups: dict[tuple, list[dict]], records: list[dict], image_dir: Path, docs_dir: Path) -> str:
    lines = [START_MARKER, "", "### Coverage of the grid", "",
             "Cells of the planned grid with a result (one cell is one method, batch size and seed; "
             "`python benchmarks/quality_grid.py` lists the missing ones):", ""]
    lines += _coverage_table(records) + [""]
    combinations = sorted({(key[0], key[1]) for key in groups})
    for task, student in combinations:
        lines += [f"### {task} task, {student} student", ""]
        image = image_dir / f"quality_{task}_{student}.png"
        by_rate = _runs_by_rate(groups, task, student)
        grid_rates = grid_learning_rates(student, records)
        if plot(groups, by_rate, grid_rates, task, student, image):
            lines += [f"![NDCG@10 against batch size]({image.relative_to(docs_dir).as_posix()})", "",
                      "Error bars are the standard deviation over seeds, so single-seed points have none.", ""]
        lines += _main_table(groups, task, student) + [""]
        rates = _learning_rate_table(by_rate, DEFAULT_LEARNING_RATES[student])
        if rates:
            lines += [f"NDCG@10 by learning rate ({task} task, {student} student; mean with the number of seeds "
                      "in brackets, the best learning rate of each row in bold):", ""] + rates + [""]
        comparisons = _comparison_table(by_rate, grid_rates)
        if comparisons:
            lines += [_comparison_intro(task, student, by_rate, grid_rates, len(comparisons) - 2), ""] + comparisons + [""]
        ablations = _ablation_table(groups, task, student)
        if ablations:
            lines += [f"Ablations ({task} task, {student} student):", ""] + ablations + [""]

    mining = _mining_table(records)
    if mining:
        lines += ["### Mining time of the B3 orderings", "",
                  "Seconds per stage when each ordering was first mined (later cells load it from the cache; "
                  "an encode of 0 means the teacher embeddings were cached too).", ""] + mining + [""]
    lines.append(END_MARKER)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "quality.jsonl"),
                        help="JSON lines written by quality.py.")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="Markdown page to update.")
    arguments = parser.parse_args()

    docs = Path(arguments.docs)
    records = load_records(Path(arguments.results))
    groups = group(records)
    section = markdown(groups, records, docs.parent / "images", docs.parent)

    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    if START_MARKER in text and END_MARKER in text:
        before = text[: text.index(START_MARKER)]
        after = text[text.index(END_MARKER) + len(END_MARKER) :]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n## Training quality\n\n" + section + "\n"
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(text)
    print(f"Updated {docs} from {sum(len(runs) for runs in groups.values())} runs")


if __name__ == "__main__":
    main()
