"""Markdown of the B3 section on a model card, with a snippet that rebuilds the sampler."""

from __future__ import annotations

import json
from typing import Any

from b3_st.card_record import CARD_FILE, PAPER_URL, SamplerRecord
from b3_st.config import B3Config

# Builder names that ``datasets`` gives data read from local files; they name no dataset.
_FILE_BUILDERS = {"arrow", "csv", "generator", "json", "pandas", "parquet", "text"}


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _teacher_cell(config: dict[str, Any]) -> str:
    teacher = _markdown_cell(config.get("teacher"))
    revision = config.get("teacher_revision")
    if revision:
        return f"`{teacher}` at revision `{_markdown_cell(revision)}`"
    return f"`{teacher}` (default branch; no revision pinned)"


def _ordering_cell(record: SamplerRecord) -> str:
    ordering = record.ordering
    if record.on_hub:
        repo_id = ordering["repo_id"]
        text = f"Hub dataset [{repo_id}](https://huggingface.co/datasets/{repo_id})"
        if ordering.get("revision"):
            text += f", revision `{_markdown_cell(ordering['revision'])}`"
        if ordering.get("commit"):
            text += f", commit `{_markdown_cell(ordering['commit'])}`"
        folder = ordering.get("config_name") or ordering.get("path_in_repo")
        if folder:
            text += f", in `{_markdown_cell(folder)}`"
        return text
    return (
        f"Local only (b3_st cache folder `mined/{_markdown_cell(ordering.get('cache_folder', ''))}`); it was not "
        "pushed to the Hub, so rebuilding it elsewhere mines it again with these settings"
    )


def _prompt_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name, label in (("query_prompt", "Query prompt"), ("document_prompt", "Document prompt"),
                        ("query_prompt_name", "Query prompt name"),
                        ("document_prompt_name", "Document prompt name")):
        if config.get(name) is not None:
            rows.append((label, f"`{_markdown_cell(json.dumps(config[name]))}`"))
    return rows


def _margin_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    margin = config.get("relative_margin")
    if margin is None:
        return []
    return [("Positive-aware filter (relative margin)",
             f"{margin}: window members scoring above {1 - margin:.0%} of the anchor's positive were dropped")]


def _dataset_title(record: SamplerRecord) -> str:
    name = record.source.get("data") or record.source.get("dataset_name")
    if name in _FILE_BUILDERS:
        name = None
    split = record.source.get("split")
    title = f"`{_markdown_cell(name)}`" if name else "Training dataset"
    if split:
        title += f" ({_markdown_cell(split)} split)"
    return title


def sampler_snippet(record: SamplerRecord, model_id: str | None) -> str:
    """Return Python code that rebuilds the sampler of ``record``."""
    defaults = B3Config().result_settings()
    always = ("teacher", "teacher_revision", "skip_top", "window_size", "cluster_size", "seed")
    arguments = [f"{name}={record.config.get(name)!r}" for name in always]
    arguments += [
        f"{name}={value!r}" for name, value in record.config.items()
        if name not in always and value != defaults.get(name)
    ]
    config_lines = "".join(f"    {argument},\n" for argument in arguments)
    model_reference = model_id or "path/to/this/model"
    hard_negative_arguments = ""
    if record.hard_negatives:
        hard_negative_arguments = (f", hard_negatives={record.hard_negatives}, "
                                   f"hard_negative_source={record.hard_negative_source!r}")
    return (
        "```python\n"
        "from b3_st import B3BatchSampler, B3Config, load_sampler_from_model\n"
        "\n"
        "# train_dataset: the training rows, in the same order as in training.\n"
        "# Rebuild the sampler from this model's b3_config.json, loading the mined ordering\n"
        "# from the local cache or the Hub:\n"
        f"sampler = load_sampler_from_model({model_reference!r}, train_dataset)\n"
        "\n"
        "# Or set it up by hand (this mines the ordering again when no cached copy exists):\n"
        "config = B3Config(\n"
        f"{config_lines}"
        ")\n"
        f"sampler = B3BatchSampler(train_dataset, batch_size={record.batch_size}, "
        f"drop_last={record.drop_last}, seed={record.seed}, config=config{hard_negative_arguments})\n"
        "epoch_0_batches = sampler.epoch_batches(0)\n"
        "```"
    )


def render_section(records: list[SamplerRecord], model_id: str | None = None) -> str:
    """Return the markdown of the card's B3 section for ``records``."""
    lines = [
        "### Training Batches (B3)",
        "",
        f"The training batches were mined with [B3]({PAPER_URL}) (Breaking the Batch Barrier) by "
        "the b3_st library: a teacher model ranks every row's positive against all "
        "anchors, rows that rank each other high form communities, and every batch is made of whole "
        "clusters of K rows from those communities, so in-batch negatives are hard. "
        f"`{CARD_FILE}` in this repository records the same settings for programs.",
        "",
    ]
    for index, record in enumerate(records, start=1):
        config = record.config
        if len(records) > 1:
            lines += [f"#### Dataset {index}: {_dataset_title(record)}", ""]
        table = [
            ("Training data", f"{_dataset_title(record)}, {record.rows:,} rows, columns "
                              f"`{_markdown_cell(record.anchor_column)}` and `{_markdown_cell(record.positive_column)}`, "
                              f"SHA-256 fingerprint `{record.fingerprint[:16]}`"),
            ("Teacher", _teacher_cell(config)),
            *_prompt_rows(config),
            ("Skipped top-ranked positives (p)", str(config.get("skip_top"))),
            ("Rank window after them (m)", str(config.get("window_size"))),
            *_margin_rows(config),
            ("Rows per cluster (K)", str(config.get("cluster_size"))),
            ("Batch size", f"{record.batch_size} rows ({record.batch_size // max(int(config.get('cluster_size') or 1), 1)} "
                           f"clusters), drop last batch: {record.drop_last}"),
            ("Shuffle seed", f"{record.seed} (epoch e shuffles the clusters with seed + e)"),
            ("Mining seed", str(config.get("seed"))),
            ("Graph edges, leftover rows, communities",
             f"{config.get('edges')}, {config.get('isolated_rows')}, {config.get('community_backend')}"),
            ("Mined ordering", _ordering_cell(record)),
        ]
        if record.hard_negatives:
            table.append(("B3++ hard negatives per row",
                          f"{record.hard_negatives}, drawn from the rank windows of "
                          f"{'the whole batch' if record.hard_negative_source == 'batch' else 'each row'}"))
        stats = record.stats
        if "hardness_b3" in stats and "hardness_random" in stats:
            table.append((
                "Batch hardness (teacher similarity of the hardest in-batch negative, mean over rows)",
                f"B3 {stats['hardness_b3']:.3f}, random batches {stats['hardness_random']:.3f} "
                f"(batch size {stats.get('hardness_batch_size')})",
            ))
        if "rows_in_full_clusters_share" in stats:
            table.append(("Rows in clusters built from window edges (the rest were packed)",
                          f"{100 * stats['rows_in_full_clusters_share']:.1f}%"))

        lines += ["| Setting | Value |", "|:--|:--|"]
        lines += [f"| {name} | {value} |" for name, value in table]
        lines += ["", "To rebuild the same batches:", "", sampler_snippet(record, model_id), ""]
    return "\n".join(lines)
