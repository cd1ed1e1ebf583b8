"""The ``b3-st`` command line, its data sources and the inspection helpers it prints and plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, WORDNET_DIR, load_wordnet
from datasets import DatasetDict

from b3_st import B3BatchSampler, B3Config, MinedResult, add_b3_to_model_card
from b3_st.cache import mined_dir
from b3_st.cli import EXIT_FAILURE, EXIT_USAGE, main
from b3_st.data import read_pairs
from b3_st.inspection import compare_hardness, format_example_batches, per_batch_hardness
from b3_st.plotting import build_inspection_figure
from b3_st.sources import DataSpec, load_pairs_dataset
from b3_st.stats import batch_hardness, random_batches
from b3_st.teacher import embed_pairs

WORDNET_FILE = str(WORDNET_DIR / "definition_words_train.parquet")
ROWS = 800
MINING_OPTIONS = ["-p", "5", "-m", "20", "-k", "8", "--batch-size", "32"]


def _run_cli(*arguments: str, cache_dir) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "B3_ST_CACHE": str(cache_dir)}
    return subprocess.run([sys.executable, "-m", "b3_st", *arguments], capture_output=True, text=True,
                          env=environment, timeout=600, check=False)


@pytest.fixture(scope="module")
def mined_folder(tmp_path_factory, tiny_teacher_path):
    """A WordNet subset mined from the shell with ``python -m b3_st mine``."""
    folder = tmp_path_factory.mktemp("cli")
    completed = _run_cli("--no-progress", "mine", WORDNET_FILE, "--rows", str(ROWS), "--teacher", tiny_teacher_path,
                         *MINING_OPTIONS, "--output", str(folder / "mined"), cache_dir=folder / "cache")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return {"mined": folder / "mined", "cache": folder / "cache", "folder": folder, "stdout": completed.stdout}


def test_mine_writes_result(mined_folder):
    result = MinedResult.load(mined_folder["mined"])

    assert result.rows == ROWS
    assert result.config.cluster_size == 8
    assert result.config.skip_top == 5
    assert result.config.window_size == 20
    assert result.metadata["source"]["data"] == WORDNET_FILE
    assert result.metadata["source"]["rows"] == ROWS
    assert result.stats["hardness_batch_size"] == 32
    assert "Rows: 800" in mined_folder["stdout"]
    assert "Hub: not pushed (local only)" in mined_folder["stdout"]


def test_mine_fills_local_cache(mined_folder, tiny_teacher_path):
    dataset = load_wordnet(rows=ROWS, seed=None)
    config = B3Config(teacher=tiny_teacher_path, cache_dir=str(mined_folder["cache"]), show_progress_bar=False,
                      skip_top=5, window_size=20, cluster_size=8)
    cached = MinedResult.load(mined_folder["mined"])

    sampler = B3BatchSampler(dataset, batch_size=32, drop_last=False, config=config)

    assert mined_dir(config.cache_dir, cached.fingerprint, config.settings_key()).is_dir()
    # Stage timings differ between runs, so equal timings show that the sampler did not mine again.
    assert sampler.mined.stats["seconds"] == cached.stats["seconds"]
    assert np.array_equal(sampler.mined.cluster_ids, cached.cluster_ids)


def test_inspect_plot_from_shell(mined_folder):
    from matplotlib.image import imread

    plot = mined_folder["folder"] / "inspect.png"
    completed = _run_cli("--no-progress", "inspect", str(mined_folder["mined"]), "--data", WORDNET_FILE,
                         "--rows", str(ROWS), "--plot", str(plot), cache_dir=mined_folder["cache"])

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Batch hardness at batch size 32" in completed.stdout
    assert "  B3:     mean" in completed.stdout
    assert "  random: mean" in completed.stdout
    assert "Batch 1 of 25 (32 rows" in completed.stdout
    assert " -> " in completed.stdout
    image = imread(plot)
    assert image.shape[1] > 1.5 * image.shape[0]
    assert image.std() > 0.05


def test_inspect_without_data_prints_summary(mined_folder, capsys):
    status = main(["-q", "inspect", str(mined_folder["mined"])])

    output = capsys.readouterr().out
    assert status == 0
    assert "Settings: p (skip_top) = 5, m (window_size) = 20, K (cluster_size) = 8" in output
    assert "Pass --data" in output


def test_figure_has_both_panels(mined_folder, tiny_teacher_path):
    result = MinedResult.load(mined_folder["mined"])
    pairs = read_pairs(load_wordnet(rows=ROWS, seed=None))
    config = B3Config(teacher=tiny_teacher_path, cache_dir=str(mined_folder["cache"]), show_progress_bar=False,
                      **{name: getattr(result.config, name) for name in ("skip_top", "window_size", "cluster_size")})
    embeddings = embed_pairs(pairs, config)
    comparison = compare_hardness(result, pairs, embeddings.anchors, embeddings.positives, 32)

    figure = build_inspection_figure(result, comparison)

    sizes_axis, hardness_axis = figure.axes
    assert sizes_axis.get_title().startswith("Community sizes before packing into clusters of K = 8")
    assert len(sizes_axis.patches) == len(result.stats["community_size_histogram"])
    assert hardness_axis.get_title().startswith("Hardness per batch, batch size 32: B3 against random")
    labels = [text.get_text() for text in hardness_axis.get_legend().get_texts()]
    assert labels[0].startswith("B3 batches (mean ")
    assert labels[1].startswith("random batches (mean ")


def test_examples_show_first_cluster(mined_folder, tiny_teacher_path):
    result = MinedResult.load(mined_folder["mined"])
    pairs = read_pairs(load_wordnet(rows=ROWS, seed=None))
    anchors = np.eye(ROWS, 4, dtype=np.float32)
    comparison = compare_hardness(result, pairs, anchors, anchors, 32)

    text = format_example_batches(pairs, comparison, cluster_size=8, count=2)

    lines = text.splitlines()
    assert len(lines) == 2 * 9
    first_row = int(comparison.b3_batches[0][0])
    assert repr(pairs.anchors[first_row])[:40] in lines[1]


def test_per_batch_hardness_matches_mean():
    generator = np.random.default_rng(0)
    anchors = generator.normal(size=(100, 8)).astype(np.float32)
    positives = generator.normal(size=(100, 8)).astype(np.float32)
    batches = random_batches(100, 16, seed=1)

    values = per_batch_hardness(anchors, positives, batches)

    sizes = np.array([len(batch) for batch in batches])
    assert len(values) == len(batches)
    assert np.average(values, weights=sizes) == pytest.approx(batch_hardness(anchors, positives, batches))
    rows = batches[0]
    similarities = anchors[rows] @ positives[rows].T
    np.fill_diagonal(similarities, -np.inf)
    assert values[0] == pytest.approx(similarities.max(axis=1).mean(), rel=1e-5)


def test_per_batch_hardness_skips_single_rows():
    vectors = np.eye(5, dtype=np.float32)

    values = per_batch_hardness(vectors, vectors, [np.array([0, 1]), np.array([2])])

    assert values.tolist() == [0.0]


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        (["mine", WORDNET_FILE, "--anchor-column", "nope"], EXIT_FAILURE, "anchor_column='nope' is not a column"),
        (["mine", "missing.parquet"], EXIT_FAILURE, "missing.parquet does not exist"),
        (["mine", WORDNET_FILE, "-k", "0"], EXIT_USAGE, "argument -k/--cluster-size: 0 is invalid"),
        (["mine", WORDNET_FILE, "-k", "three"], EXIT_USAGE, "argument -k/--cluster-size: invalid positive integer"),
        (["mine", WORDNET_FILE, "-k", "8", "--batch-size", "60"], EXIT_FAILURE,
         "--batch-size 60 is not a multiple of --cluster-size 8"),
        (["mine", WORDNET_FILE, "--rows", "50"], EXIT_FAILURE, "needs at least 131"),
        (["mine", str(REPO_ROOT / "README.md")], EXIT_FAILURE, "has the suffix .md"),
        (["inspect", "no-such-folder"], EXIT_FAILURE, "no-such-folder has no mined result"),
        (["inspect", "no-such-folder", "--plot", "figure.png"], EXIT_USAGE, "--plot needs --data"),
        (["reproduce", str(REPO_ROOT)], EXIT_FAILURE, "has no b3_config.json"),
        (["frobnicate"], EXIT_USAGE, "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_one_line_error(arguments, status, message, capsys):
    assert _exit_status(["-q", "--no-progress", *arguments]) == status

    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert message in lines[0]
    assert lines[0].startswith("b3-st")


def _exit_status(arguments: list[str]) -> int:
    """Return the status that ``main`` returns, or that it exits with for argparse errors."""
    try:
        return main(arguments)
    except SystemExit as exit_info:
        return exit_info.code


def test_usage_error_exit_status():
    with pytest.raises(SystemExit) as exit_info:
        main(["mine", WORDNET_FILE, "-k", "0"])

    assert exit_info.value.code == EXIT_USAGE


def test_console_script_declared():
    # Read as text because tomllib needs Python 3.11 and the package supports 3.10.
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    scripts = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]

    assert 'b3-st = "b3_st.cli:main"' in scripts
    assert callable(main)


def test_help_names_units(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["mine", "--help"])

    output = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    assert "p: top-ranked positives skipped per anchor as likely false negatives (positives; default: 30)" in output
    assert "K: rows per cluster; the batch size must be a multiple of it (rows; default: 8)" in output
    assert "--push-to-hub REPO" in output


def test_reproduce_prints_record(tiny_teacher_path, minilm_path, tmp_path, capsys):
    from test_model_card import _student

    dataset = load_wordnet(rows=600, seed=0)
    config = B3Config(teacher=tiny_teacher_path, show_progress_bar=False, skip_top=5, window_size=20, cluster_size=8)
    sampler = B3BatchSampler(dataset, batch_size=32, drop_last=False, seed=5, config=config)
    model = _student(minilm_path)
    add_b3_to_model_card(model, sampler)
    model.save_pretrained(str(tmp_path))

    status = main(["-q", "reproduce", str(tmp_path)])
    output = capsys.readouterr().out

    assert status == 0
    assert f"Teacher: {tiny_teacher_path}" in output
    assert "p (skip_top) = 5, m (window_size) = 20, K (cluster_size) = 8" in output
    assert "Batch size = 32, drop_last = False, shuffle seed = 5" in output
    assert "Ordering: local only" in output
    assert "Local cache: found at" in output
    assert f"load_sampler_from_model({str(tmp_path)!r}, train_dataset)" in output

    status = main(["-q", "reproduce", str(tmp_path), "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert status == 0
    assert payload["samplers"][0]["seed"] == 5


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".tsv", ".parquet"])
def test_sources_read_file_types(suffix, tmp_path):
    dataset = load_wordnet(rows=20, seed=None)
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".csv":
        dataset.to_csv(str(path), index=False)
    elif suffix == ".tsv":
        dataset.to_csv(str(path), index=False, sep="\t")
    elif suffix == ".parquet":
        dataset.to_parquet(str(path))
    else:
        dataset.to_json(str(path), lines=True)

    loaded = load_pairs_dataset(DataSpec(data=str(path), rows=10))

    assert len(loaded) == 10
    assert loaded["anchor"] == dataset["anchor"][:10]
    assert loaded["positive"] == dataset["positive"][:10]


def test_sources_saved_dataset_dict_split(tmp_path):
    splits = DatasetDict({"train": load_wordnet(rows=12, seed=None),
                          "dev": load_wordnet("definition_words_test", rows=7, seed=None)})
    splits.save_to_disk(str(tmp_path / "saved"))

    assert len(load_pairs_dataset(DataSpec(data=str(tmp_path / "saved")))) == 12
    assert len(load_pairs_dataset(DataSpec(data=str(tmp_path / "saved"), split="dev"))) == 7
    with pytest.raises(ValueError, match="Split 'test' is not in"):
        load_pairs_dataset(DataSpec(data=str(tmp_path / "saved"), split="test"))


def test_sources_plain_folder_rejected(tmp_path):
    with pytest.raises(ValueError, match="not a dataset saved with save_to_disk"):
        load_pairs_dataset(DataSpec(data=str(tmp_path)))


def test_main_restores_logging(mined_folder):
    import logging

    package_logger = logging.getLogger("b3_st")
    before = (package_logger.level, package_logger.propagate, list(package_logger.handlers))

    assert main(["--no-progress", "inspect", str(mined_folder["mined"])]) == 0

    assert (package_logger.level, package_logger.propagate, list(package_logger.handlers)) == before
