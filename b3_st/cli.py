"""The ``b3-st`` command line: mine, inspect and push mined orderings, and show a model's B3 record.

Run ``b3-st --help`` or ``b3-st COMMAND --help`` for the options. Errors on bad input print one
line to stderr and exit with status 2 for invalid options, 1 for every other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

from b3_st.cache import mined_dir
from b3_st.card_record import SamplerRecord, card_payload, read_card_records
from b3_st.config import DEFAULT_TEACHER, B3Config
from b3_st.data import read_pairs
from b3_st.inspection import compare_hardness, format_example_batches, summarize, summarize_hardness
from b3_st.mining import load_or_mine
from b3_st.result import MinedResult
from b3_st.sources import DataSpec, load_pairs_dataset
from b3_st.teacher import embed_pairs

logger = logging.getLogger(__name__)

EXIT_FAILURE = 1
EXIT_USAGE = 2

_EXAMPLES = """examples:
  b3-st mine data/wordnet/definition_words_train.parquet --rows 5000 -k 8 --output mined/wordnet
  b3-st inspect mined/wordnet --data data/wordnet/definition_words_train.parquet --rows 5000 --plot wordnet.png
  b3-st push mined/wordnet my-user/b3-orderings
  b3-st reproduce my-user/my-b3-model
"""


class _UsageError(Exception):
    """Options that parse but do not work together."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: the problem and where to find help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is invalid: it must be 1 or more")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is invalid: it must be 0 or more")
    return value


_positive_int.__name__ = "positive integer"
_non_negative_int.__name__ = "non-negative integer"


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--split", help="Split to read; default: 'train' when present, else the only split.")
    group.add_argument("--subset", help="Config (subset) name of a Hub dataset.")
    group.add_argument("--data-revision", help="Branch, tag or commit of a Hub dataset.")
    group.add_argument("--rows", type=_positive_int,
                       help="Use only the first ROWS rows, in file order (rows); default: all.")
    group.add_argument("--anchor-column", help="Anchor (query) column; default: the first text column.")
    group.add_argument("--positive-column", help="Positive column; default: the second text column.")


def _add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", help="Torch device of the teacher, for example 'cuda' or 'cpu'; default: automatic.")
    group.add_argument("--encode-batch-size", type=_positive_int, default=128,
                       help="Texts per teacher forward pass (texts; default: %(default)s).")
    group.add_argument("--cache-dir", help="b3_st cache folder for embeddings and mined results; "
                                           "default: $B3_ST_CACHE, else $HF_HOME/b3_st.")


def _add_hub_arguments(parser: argparse.ArgumentParser, *, revision_help: str) -> None:
    group = parser.add_argument_group("Hub")
    group.add_argument("--hub-revision", help=revision_help)
    group.add_argument("--private", action="store_true", default=None,
                       help="Create the Hub dataset repo as private when the push creates it.")
    group.add_argument("--config-name", help="Folder and datasets config of the ordering in the repo; "
                                             "default: named after the dataset, teacher, p, m and K.")
    group.add_argument("--token", help="Hub access token; default: the saved login or $HF_TOKEN. It is never printed.")


def _add_mine_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "mine", help="Mine B3 clusters for a dataset.",
        description="Mine B3 clusters for a dataset of (anchor, positive) pairs. The result is cached in the "
                    "b3_st cache, so a training run on the same data and settings reuses it, and is written "
                    "to --output when given.",
    )
    parser.add_argument("data", help="Hub dataset id, local .parquet/.json/.jsonl/.csv/.tsv file, or a folder "
                                     "written by Dataset.save_to_disk.")
    _add_data_arguments(parser)

    mining = parser.add_argument_group("mining")
    mining.add_argument("--teacher", default=DEFAULT_TEACHER,
                        help="Hub id or local folder of the SentenceTransformer teacher (default: %(default)s).")
    mining.add_argument("--teacher-revision", help="Branch, tag or commit of the teacher; pin a commit for "
                                                   "reproducible batches. Default: the default branch.")
    mining.add_argument("--query-prompt", help="Text prepended to every anchor before encoding, e.g. 'query: '.")
    mining.add_argument("--document-prompt", help="Text prepended to every positive before encoding.")
    mining.add_argument("--query-prompt-name", help="Name of a prompt stored in the teacher, used for anchors.")
    mining.add_argument("--document-prompt-name", help="Name of a prompt stored in the teacher, used for positives.")
    mining.add_argument("-p", "--skip-top", type=_non_negative_int, default=30, metavar="P",
                        help="p: top-ranked positives skipped per anchor as likely false negatives "
                             "(positives; default: %(default)s).")
    mining.add_argument("-m", "--window-size", type=_positive_int, default=100, metavar="M",
                        help="m: positives kept after the skipped ones in each rank window "
                             "(positives; default: %(default)s).")
    mining.add_argument("-k", "--cluster-size", type=_positive_int, default=8, metavar="K",
                        help="K: rows per cluster; the batch size must be a multiple of it (rows; default: %(default)s).")
    mining.add_argument("--batch-size", type=_positive_int, default=64,
                        help="Training batch size, a multiple of K. Checked against K and used to measure batch "
                             "hardness (rows; default: %(default)s).")
    mining.add_argument("--relative-margin", type=float, default=None, metavar="SHARE",
                        help="Drop window members whose teacher score is above the anchor's score with its own "
                             "positive minus SHARE times its magnitude, e.g. 0.05 for 95%% of it (default: off).")
    mining.add_argument("--edges", choices=("mutual", "all"), default="mutual",
                        help="Graph edges: 'mutual' keeps pairs in each other's window, 'all' every window edge "
                             "(default: %(default)s).")
    mining.add_argument("--isolated-rows", choices=("attach", "random"), default="attach",
                        help="Rows left in small communities: 'attach' merges them along their strongest edges, "
                             "'random' packs them at random (default: %(default)s).")
    mining.add_argument("--seed", type=int, default=0,
                        help="Seed of community detection and packing (default: %(default)s).")
    mining.add_argument("--community-backend", choices=("leiden", "metis"), default="leiden",
                        help="Community detection: 'leiden' or 'metis' (needs pymetis) (default: %(default)s).")

    _add_runtime_arguments(parser)
    parser.add_argument("-o", "--output", help="Folder to write the result to (clusters.parquet and b3_metadata.json).")
    parser.add_argument("--push-to-hub", metavar="REPO", help="Push the result to this Hub dataset repo "
                                                              "('namespace/name') after mining.")
    _add_hub_arguments(parser, revision_help="Branch of REPO to push to; default: main.")
    parser.set_defaults(handler=_command_mine)


def _add_inspect_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "inspect", help="Show statistics, example batches and batch hardness of a mined result.",
        description="Show the settings and statistics of a mined result. With --data, the rows it was mined "
                    "from, also print example batches as text and compare the hardness of B3 batches "
                    "with random batches; the teacher embeddings come from the b3_st cache, or the teacher "
                    "encodes the rows again when they are not cached.",
    )
    parser.add_argument("mined", help="Folder of a mined result (the --output of b3-st mine).")
    parser.add_argument("--data", help="The data the result was mined from: Hub dataset id, local file or "
                                       "saved dataset folder. Needed for example batches, hardness and --plot.")
    _add_data_arguments(parser)
    parser.add_argument("--batch-size", type=_positive_int,
                        help="Batch size for the examples and the hardness comparison, a multiple of K "
                             "(rows; default: the batch size used when mining).")
    parser.add_argument("--epoch-seed", type=int, default=0,
                        help="Shuffle seed of the inspected epoch and of the random batches (default: %(default)s).")
    parser.add_argument("--examples", type=_non_negative_int, default=3,
                        help="Example batches to print (batches; default: %(default)s).")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="Save a figure of the cluster-size histogram and of hardness per batch for B3 "
                             "against random batches. Needs --data.")
    _add_runtime_arguments(parser)
    parser.set_defaults(handler=_command_inspect)


def _add_push_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "push", help="Upload a mined result to a Hub dataset repo.",
        description="Upload a mined result folder to a Hub dataset repo and record the repo, revision and "
                    "commit in the folder's b3_metadata.json, and in the b3_st cache's copy when there is one, "
                    "so that models trained on it name the ordering's Hub location.",
    )
    parser.add_argument("mined", help="Folder of a mined result (the --output of b3-st mine).")
    parser.add_argument("repo", help="Hub dataset repo to push to ('namespace/name').")
    _add_hub_arguments(parser, revision_help="Branch to push to; default: main.")
    parser.add_argument("--commit-message", help="Message of the Hub commit.")
    parser.add_argument("--cache-dir", help="b3_st cache folder whose copy of the result also records the push; "
                                            "default: $B3_ST_CACHE, else $HF_HOME/b3_st.")
    parser.set_defaults(handler=_command_push)


def _add_reproduce_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "reproduce", help="Print the B3 sampler settings and ordering source recorded in a model.",
        description="Print the B3 sampler settings and the source of the mined ordering that a model "
                    "records in its b3_config.json, and whether the ordering is in the local cache.",
    )
    parser.add_argument("model", help="Local folder of the saved model, or its Hub model id.")
    parser.add_argument("--revision", help="Branch, tag or commit of the Hub model.")
    parser.add_argument("--token", help="Hub access token for a private model. It is never printed.")
    parser.add_argument("--cache-dir", help="b3_st cache folder to look for the ordering in; default: "
                                            "$B3_ST_CACHE, else $HF_HOME/b3_st.")
    parser.add_argument("--json", action="store_true", help="Print the records as JSON instead of text.")
    parser.set_defaults(handler=_command_reproduce)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``b3-st`` command line."""
    parser = _Parser(
        prog="b3-st",
        description="B3 batch mining (Breaking the Batch Barrier) for sentence-transformers training.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="Log warnings and errors only.")
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    parser.add_argument("--debug", action="store_true", help="Print the full traceback of an error.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_mine_parser(commands)
    _add_inspect_parser(commands)
    _add_push_parser(commands)
    _add_reproduce_parser(commands)
    return parser


def _data_spec(args: argparse.Namespace, data: str) -> DataSpec:
    return DataSpec(data=data, split=args.split, subset=args.subset, revision=args.data_revision, rows=args.rows)


def _push(result: MinedResult, repo: str, args: argparse.Namespace, folders: list[Path], commit_message: str | None = None):
    """Push ``result`` to ``repo``, then save it into ``folders`` so they record the Hub location."""
    try:
        from b3_st.hub import push_mined
    except ModuleNotFoundError as error:
        if error.name != "b3_st.hub":
            raise
        raise ImportError("Pushing needs the b3_st.hub module, which this b3_st install lacks: upgrade b3_st.") from error

    info = push_mined(result, repo, revision=args.hub_revision, private=args.private, token=args.token,
                      config_name=args.config_name, commit_message=commit_message)
    print(f"Pushed to {info.repo_id} (revision {info.revision}, commit {info.commit}): {info.url}")

    # Saved metadata["hub"] lets a model trained on this result name the ordering's Hub location.
    for folder in folders:
        result.save(folder)
    return info


def _command_mine(args: argparse.Namespace) -> int:
    if args.batch_size % args.cluster_size != 0:
        raise ValueError(
            f"--batch-size {args.batch_size} is not a multiple of --cluster-size {args.cluster_size}: every batch "
            "holds whole clusters. Change one of them."
        )
    config = B3Config(
        teacher=args.teacher, teacher_revision=args.teacher_revision,
        query_prompt=args.query_prompt, document_prompt=args.document_prompt,
        query_prompt_name=args.query_prompt_name, document_prompt_name=args.document_prompt_name,
        anchor_column=args.anchor_column, positive_column=args.positive_column,
        skip_top=args.skip_top, window_size=args.window_size, cluster_size=args.cluster_size,
        relative_margin=args.relative_margin, edges=args.edges, isolated_rows=args.isolated_rows, seed=args.seed,
        community_backend=args.community_backend, encode_batch_size=args.encode_batch_size,
        device=args.device, cache_dir=args.cache_dir, show_progress_bar=not args.no_progress,
    )

    spec = _data_spec(args, args.data)
    dataset = load_pairs_dataset(spec)
    pairs = read_pairs(dataset, config.anchor_column, config.positive_column)
    result = load_or_mine(dataset, config, pairs=pairs, stats_batch_size=args.batch_size)
    result.metadata["source"] = {**result.metadata.get("source", {}), **spec.describe()}

    if args.output:
        result.save(args.output)
        print(f"Saved the mined result to {args.output}")
    if args.push_to_hub:
        folders = [Path(args.output)] if args.output else []
        folders.append(mined_dir(config.cache_dir, result.fingerprint, config.settings_key()))
        _push(result, args.push_to_hub, args, folders)
    print(summarize(result))
    return 0


def _command_inspect(args: argparse.Namespace) -> int:
    if args.plot and not args.data:
        raise _UsageError("--plot needs --data: the hardness panel needs the rows and their teacher embeddings.")
    result = MinedResult.load(args.mined)
    print(summarize(result))
    if not args.data:
        print("Pass --data with the mined rows for example batches and the hardness comparison.")
        return 0

    _inspect_batches(args, result)
    return 0


def _inspect_batches(args: argparse.Namespace, result: MinedResult) -> None:
    cluster_size = result.config.cluster_size
    batch_size = args.batch_size or result.stats.get("hardness_batch_size") or 64 // cluster_size * cluster_size
    if batch_size % cluster_size != 0:
        raise ValueError(
            f"--batch-size {batch_size} is not a multiple of the result's cluster size {cluster_size}. "
            f"Pass a multiple, for example {max(cluster_size, batch_size // cluster_size * cluster_size)}."
        )

    dataset = load_pairs_dataset(_data_spec(args, args.data))
    pairs = read_pairs(dataset, args.anchor_column or result.metadata.get("anchor_column"),
                       args.positive_column or result.metadata.get("positive_column"))
    result.check_matches(pairs.fingerprint, len(pairs))

    config = dataclasses.replace(result.config, cache_dir=args.cache_dir, device=args.device,
                                 encode_batch_size=args.encode_batch_size, show_progress_bar=not args.no_progress)
    embeddings = embed_pairs(pairs, config)
    comparison = compare_hardness(result, pairs, embeddings.anchors, embeddings.positives, batch_size,
                                  seed=args.epoch_seed, show_progress_bar=not args.no_progress)
    print()
    print(summarize_hardness(comparison))
    if args.examples:
        print()
        print(format_example_batches(pairs, comparison, cluster_size, count=args.examples))

    if args.plot:
        from b3_st.plotting import plot_inspection

        path = plot_inspection(result, comparison, args.plot)
        print(f"\nSaved the figure to {path}")


def _command_push(args: argparse.Namespace) -> int:
    result = MinedResult.load(args.mined)
    folders = [Path(args.mined)]
    cached = mined_dir(args.cache_dir, result.fingerprint, result.config.settings_key())
    if cached.exists():
        folders.append(cached)
    _push(result, args.repo, args, folders, commit_message=args.commit_message)
    return 0


def _describe_record(index: int, record: SamplerRecord, cache_dir: str | None) -> str:
    config = record.config
    source = ", ".join(f"{key}={value}" for key, value in record.source.items()) or "unknown"
    lines = [
        f"Sampler {index}:",
        f"  Training data: {record.rows:,} rows, columns {record.anchor_column} and {record.positive_column}, "
        f"fingerprint {record.fingerprint} (source: {source})",
        f"  Teacher: {config.get('teacher')} (revision: {config.get('teacher_revision') or 'default branch, not pinned'})",
        f"  p (skip_top) = {config.get('skip_top')}, m (window_size) = {config.get('window_size')}, "
        f"K (cluster_size) = {config.get('cluster_size')}, mining seed = {config.get('seed')}",
        f"  Batch size = {record.batch_size}, drop_last = {record.drop_last}, shuffle seed = {record.seed} "
        "(epoch e uses seed + e)",
    ]
    if record.on_hub:
        ordering = record.ordering
        lines.append(f"  Ordering: Hub dataset {ordering['repo_id']} (revision {ordering.get('revision') or 'main'}, "
                     f"commit {ordering.get('commit')}, folder {ordering.get('config_name') or ordering.get('path_in_repo')})")
    else:
        lines.append("  Ordering: local only; it was not pushed to the Hub")
    folder = mined_dir(cache_dir, record.fingerprint, record.settings_key)
    status = "found" if folder.exists() else "not found"
    lines.append(f"  Local cache: {status} at {folder}")
    return "\n".join(lines)


def _command_reproduce(args: argparse.Namespace) -> int:
    records = read_card_records(args.model, revision=args.revision, token=args.token)
    if args.json:
        print(json.dumps(card_payload(records), indent=2, sort_keys=True))
        return 0

    print("\n".join(_describe_record(index, record, args.cache_dir) for index, record in enumerate(records, 1)))
    print("\nRebuild the sampler in Python with:")
    print(f"  from b3_st import load_sampler_from_model\n  sampler = load_sampler_from_model({args.model!r}, train_dataset)")
    return 0


@contextlib.contextmanager
def _command_output(quiet: bool, progress: bool) -> Iterator[None]:
    """Send b3_st logs to stderr and set the progress bars for one command, then restore both.

    Restoring keeps ``main`` free of side effects when a program or test calls it in-process.
    """
    package_logger = logging.getLogger("b3_st")
    saved = (package_logger.level, package_logger.propagate)
    progress_was_enabled = is_progress_bar_enabled()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.WARNING if quiet else logging.INFO)
    package_logger.propagate = False
    if not progress:
        disable_progress_bar()
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(saved[0])
        package_logger.propagate = saved[1]
        if progress_was_enabled:
            enable_progress_bar()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``b3-st`` command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)

    try:
        with _command_output(args.quiet, progress=not args.no_progress):
            return args.handler(args)
    except _UsageError as error:
        print(f"b3-st {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError, ImportError) as error:
        if args.debug:
            raise
        print(f"b3-st {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"b3-st {args.command}: interrupted", file=sys.stderr)
        return 130
