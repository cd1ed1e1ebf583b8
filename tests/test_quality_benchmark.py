"""The quality benchmark's grid and report: which results count for which cell, the commands the grid
hands to quality.py, and the tables the report builds from recorded results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import quality  # noqa: E402
import quality_grid  # noqa: E402
import report_quality  # noqa: E402
from quality_grid import Cell, coverage, format_rate, grid, missing_cells  # noqa: E402


def _record(**changes) -> dict:
    record = {"task": "definition", "student": "static", "method": "b3", "batch_size": 64, "seed": 0,
              "train_rows": 111852, "learning_rate": 0.2, "tag": "", "hard_negatives": 0, "ndcg@10": 0.15,
              "train_seconds": 60.0, "preparation_seconds": 1.0, "skip_top": 30, "window_size": 100,
              "cluster_size": 8, "edges": "mutual", "isolated_rows": "attach", "relative_margin": None}
    record.update(changes)
    return record


def test_grid_lists_each_cell_once():
    cells = grid()

    assert len(cells) == len(set(cells))
    static = [cell for cell in cells if cell.student == "static" and cell.learning_rate == 0.2]
    rate_check = [cell for cell in cells if cell.student == "static" and cell.learning_rate != 0.2]
    transformer = [cell for cell in cells if cell.student == "minilm3"]
    assert len(static) == 2 * 6 * 5 * 3
    assert {(cell.task, cell.method, cell.batch_size, cell.seed) for cell in rate_check} == {
        ("definition", method, size, 0) for method in ("random", "b3") for size in (64, 256)}
    assert len(rate_check) == 4 * 2 * 2
    assert len(transformer) == 4 * 3 * 2
    assert {cell.batch_size for cell in transformer} == {32, 64, 256}
    assert all(cell.train_rows == quality_grid.MINILM3_TRAIN_ROWS for cell in transformer)
    assert all(cell.learning_rate == quality_grid.MINILM3_LEARNING_RATES[cell.batch_size] for cell in transformer)


@pytest.mark.parametrize(("rate", "text"), [(1e-4, "1e-4"), (2e-4, "2e-4"), (5e-5, "5e-5"), (1.5e-4, "1.5e-4")])
def test_format_rate_writes_the_tag_form(rate, text):
    assert format_rate(rate) == text
    assert float(text) == pytest.approx(rate)


def test_cell_matches_only_its_own_default_runs():
    cell = Cell("definition", "static", "b3", 64, 0, 0.2)

    assert cell.matches(_record())
    assert not cell.matches(_record(seed=1))
    assert not cell.matches(_record(method="random"))
    assert not cell.matches(_record(task="example"))
    assert not cell.matches(_record(tag="p10", skip_top=10))
    assert not cell.matches(_record(learning_rate=0.1, tag="lr0.1"))
    assert not cell.matches(_record(cluster_size=4))
    assert not cell.matches(_record(relative_margin=0.05))


def test_static_rate_check_cell_is_tagged():
    cell = Cell("definition", "static", "random", 256, 0, 0.4)

    assert cell.tag == "lr4e-1"
    assert cell.arguments()[-4:] == ["--learning-rate", "4e-1", "--tag", "lr4e-1"]
    assert cell.matches(_record(method="random", batch_size=256, learning_rate=0.4, tag="lr4e-1"))
    assert not cell.matches(_record(method="random", batch_size=256))


def test_default_rates_agree_with_quality():
    assert quality_grid.DEFAULT_LEARNING_RATES == quality.DEFAULT_LEARNING_RATES


def test_transformer_cell_needs_rate_and_subset():
    cell = Cell("definition", "minilm3", "random", 64, 1, 1e-4, 20_000)
    run = _record(student="minilm3", method="random", seed=1, train_rows=20_000, learning_rate=1e-4, tag="lr1e-4")

    assert cell.tag == "lr1e-4"
    assert cell.matches(run)
    assert not cell.matches({**run, "learning_rate": 5e-5, "tag": ""})
    assert not cell.matches({**run, "train_rows": 10_000})
    assert not cell.matches({**run, "tag": "lr1e-4-margin0.05"})


def test_missing_cells_and_coverage_counts():
    cells = [Cell("definition", "static", "b3", 64, seed, 0.2) for seed in range(3)]
    cells.append(Cell("example", "static", "b3", 64, 0, 0.2))
    records = [_record(seed=0), _record(seed=2), _record(seed=2), _record(task="example", seed=1)]

    assert missing_cells(cells, records) == [cells[1], cells[3]]
    assert coverage(cells, records) == {("definition", "static"): (2, 3), ("example", "static"): (0, 1)}


def _random_minilm3(batch_size: int, rate: float, score: float, seed: int = 0) -> dict:
    return _record(student="minilm3", method="random", batch_size=batch_size, seed=seed, train_rows=20_000,
                   learning_rate=rate, tag=f"lr{format_rate(rate)}", **{"ndcg@10": score})


def test_tuned_rates_use_seed_zero():
    records = [
        _random_minilm3(64, 2e-4, 0.23), _random_minilm3(64, 2e-4, 0.20, seed=1), _random_minilm3(64, 4e-4, 0.22),
        _random_minilm3(256, 4e-4, 0.20), _random_minilm3(256, 8e-4, 0.19),
        _record(student="minilm3", method="b3", batch_size=32, train_rows=20_000, learning_rate=5e-4, tag="lr5e-4"),
        _random_minilm3(32, 5e-4, 0.30) | {"tag": "p10"},
        _random_minilm3(256, 1.6e-3, 0.30) | {"relative_margin": 0.05},
    ]

    rates = quality_grid.tuned_learning_rates(records)

    assert rates[64] == 2e-4
    assert rates[256] == 4e-4
    assert rates[32] == quality_grid.MINILM3_LEARNING_RATES[32]


def test_tuning_cells_try_next_rate():
    records = [
        _random_minilm3(32, 1e-4, 0.20),
        _random_minilm3(64, 2e-4, 0.21), _random_minilm3(64, 4e-4, 0.22),
        _random_minilm3(256, 4e-4, 0.20), _random_minilm3(256, 8e-4, 0.21), _random_minilm3(256, 1.6e-3, 0.20),
        _random_minilm3(128, 4e-4, 0.20),
    ]

    cells = quality_grid.tuning_cells(records)

    assert [(cell.batch_size, cell.learning_rate) for cell in cells] == [(32, 2e-4), (64, 8e-4)]
    assert cells[1].arguments()[-4:] == ["--learning-rate", "8e-4", "--tag", "lr8e-4"]
    assert quality_grid.tuning_cells([_random_minilm3(64, 2e-4, 0.22), _random_minilm3(64, 4e-4, 0.21)])[0].learning_rate == 1e-4


def test_grid_uses_tuned_rates_after_tuning_cells():
    records = [_random_minilm3(64, 2e-4, 0.21), _random_minilm3(64, 4e-4, 0.22)]

    cells = [cell for cell in grid(records) if cell.student == "minilm3"]

    assert cells[0] == Cell("definition", "minilm3", "random", 64, 0, 8e-4, 20_000)
    assert {cell.learning_rate for cell in cells[1:] if cell.batch_size == 64} == {4e-4}
    assert len(cells) == 1 + 4 * 3 * 2


@pytest.mark.parametrize("cell", [grid()[0], grid()[-1], Cell("definition", "minilm3", "hn1", 256, 1, 2e-4, 20_000),
                                  Cell("definition", "static", "b3", 64, 0, 0.05)])
def test_grid_commands_parse_in_quality(cell, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["quality.py", *cell.arguments()])

    arguments = quality.parse_arguments()

    assert (arguments.task, arguments.student, arguments.method) == (cell.task, cell.student, cell.method)
    assert (arguments.batch_size, arguments.seed, arguments.train_rows) == (cell.batch_size, cell.seed, cell.train_rows)
    learning_rate = arguments.learning_rate or quality.DEFAULT_LEARNING_RATES[cell.student]
    assert learning_rate == pytest.approx(cell.learning_rate)
    assert arguments.tag == cell.tag


def test_grid_script_lists_missing_cells(tmp_path, monkeypatch, capsys):
    results = tmp_path / "quality.jsonl"
    results.write_text(json.dumps(_record(task="example", method="random", batch_size=32, seed=0)) + "\n")
    monkeypatch.setattr(sys, "argv", ["quality_grid.py", "--results", str(results), "--task", "example",
                                      "--student", "static", "--limit", "2"])

    quality_grid.main()

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "example task, static student: 1 of 90 cells done"
    assert lines[1].startswith("python benchmarks/quality.py --task example --student static --method random "
                               "--batch-size 32 --seed 1")
    assert len(lines) == 3


def test_grid_run_relists_after_each_cell(tmp_path, monkeypatch):
    results = tmp_path / "quality.jsonl"
    results.write_text(json.dumps(_random_minilm3(64, 2e-4, 0.21)) + "\n")
    scores = {4e-4: 0.20, 1e-4: 0.19}
    commands = []

    def fake_run(command, cwd, check):
        options = dict(zip(command[2::2], command[3::2]))
        commands.append((int(options["--batch-size"]), int(options["--seed"]), float(options["--learning-rate"])))
        if len(commands) == 3:
            return subprocess.CompletedProcess(command, 1)
        rate = float(options["--learning-rate"])
        record = _random_minilm3(int(options["--batch-size"]), rate, scores.get(rate, 0.2), int(options["--seed"]))
        if len(commands) == 4:
            record["train_rows"] = 19_999
        with results.open("a") as file:
            file.write(json.dumps(record) + "\n")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(quality_grid.subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "argv", ["quality_grid.py", "--results", str(results), "--student", "minilm3",
                                      "--run", "--limit", "6"])

    quality_grid.main()

    assert commands[0] == (64, 0, 4e-4)
    assert commands[1] == (64, 0, 1e-4)
    assert commands[2] == (32, 0, 1e-4)
    assert commands[3] == (32, 1, 1e-4)
    assert commands[4] == (64, 1, 2e-4)
    assert len(commands) == 6


def test_report_averages_seeds_and_marks_best_rate(tmp_path):
    records = [
        _record(method="random", seed=0, **{"ndcg@10": 0.14}),
        _record(method="random", seed=1, **{"ndcg@10": 0.16}),
        _record(method="b3", seed=0, **{"ndcg@10": 0.13}),
        _record(method="b3", seed=0, learning_rate=0.1, tag="lr0.1", **{"ndcg@10": 0.17}),
        _record(method="b3", seed=0, skip_top=70, tag="p70", hardness_b3=0.4006, hardness_random=0.2901,
                hardness_batch_size=64, **{"ndcg@10": 0.149}),
    ]
    groups = report_quality.group(records)

    text = report_quality.markdown(groups, records, tmp_path / "images", tmp_path)

    assert text.startswith(report_quality.START_MARKER)
    assert text.endswith(report_quality.END_MARKER)
    assert "| definition | static | 4 | 106 |" in text
    assert "| random (no duplicates) | 64 | 111852 | 2 | 0.1500 | 0.0141 | 2 | 60 | 1 |" in text
    assert "| method | batch size | train rows | lr 1e-1 | lr 2e-1 |" in text
    assert "| B3 | 64 | 111852 | **0.1700 (1)** | 0.1300 (1) |" in text
    assert "| random (no duplicates) | 64 | 111852 | - |" not in text
    assert "| B3 | 64 | 111852 | 2 | 0.1300 | - | 1 | 60 | 1 |" in text
    assert "| p70 | B3 | 64 | 111852 | 0.2 | 70 | 100 | 8 | mutual | attach | - | 0.1490 | - | 1 | 0.401 / 0.290 (at 64) |" in text
    assert (tmp_path / "images" / "quality_definition_static.png").stat().st_size > 0


def test_comparison_reads_pooled_seed_noise():
    records = [
        _record(method="random", batch_size=256, seed=0, **{"ndcg@10": 0.15}),
        _record(method="random", batch_size=256, seed=1, **{"ndcg@10": 0.16}),
        _record(method="b3", seed=0, **{"ndcg@10": 0.17}),
        _record(method="b3", seed=1, **{"ndcg@10": 0.18}),
        _record(method="hn1", seed=0, hard_negatives=1, **{"ndcg@10": 0.175}),
        _record(method="b3pp1", seed=0, hard_negatives=1, **{"ndcg@10": 0.15}),
        _record(method="b3pp1", seed=0, hard_negatives=1, learning_rate=0.4, tag="lr4e-1", **{"ndcg@10": 0.19}),
    ]
    by_rate = report_quality._runs_by_rate(report_quality.group(records), "definition", "static")

    lines = report_quality._comparison_table(by_rate, {64: 0.2, 256: 0.2})

    assert report_quality._pooled_seed_spread(by_rate) == pytest.approx(0.005 ** 0.5 / 10)
    assert "| B3 at 64 | 0.1750 (2) | random (no duplicates) at 256 | 0.1550 (2) | +0.0200 | 0.0141 | above |" in lines
    assert "| B3 at 64 | 0.1750 (2) | random + 1 mined negative at 64 | 0.1750 (1) | +0.0000 | 0.0173 | within noise |" in lines
    assert "| B3++ h=1 at 64 | 0.1500 (1) | random + 1 mined negative at 64 | 0.1750 (1) | -0.0250 | 0.0200 | below |" in lines
    assert not any("random (no duplicates) at 64 |" in line for line in lines)


def test_comparison_reads_grid_rates_and_names_them():
    records = [
        _record(student="minilm3", method="random", batch_size=256, seed=0, learning_rate=4e-4, tag="lr4e-4",
                **{"ndcg@10": 0.21}),
        _record(student="minilm3", method="random", batch_size=256, seed=1, learning_rate=4e-4, tag="lr4e-4",
                **{"ndcg@10": 0.212}),
        _record(student="minilm3", method="b3", seed=0, learning_rate=1e-4, tag="lr1e-4", **{"ndcg@10": 0.20}),
        _record(student="minilm3", method="b3", seed=0, learning_rate=2e-4, tag="lr2e-4", **{"ndcg@10": 0.22}),
        _record(student="minilm3", method="b3", seed=0, learning_rate=4e-4, tag="lr4e-4", **{"ndcg@10": 0.25}),
    ]
    by_rate = report_quality._runs_by_rate(report_quality.group(records), "definition", "minilm3")

    lines = report_quality._comparison_table(by_rate, {64: 2e-4, 256: 4e-4})

    assert lines[2].startswith("| B3 at 64, lr 2e-4 | 0.2200 (1) | random (no duplicates) at 256, lr 4e-4 | 0.2110 (2) |")
    assert len(lines) == 3
