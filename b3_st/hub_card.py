"""The dataset card (README.md) of a Hub repo of mined orderings: YAML metadata and a usage guide."""

from __future__ import annotations

import logging
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from b3_st.result import CLUSTERS_FILE, METADATA_FILE, MinedResult

logger = logging.getLogger(__name__)

CARD_TAGS = ["b3", "sentence-transformers", "hard-negatives", "batch-mining"]
ORDERINGS_KEY = "b3_orderings"

# Statistics copied from the mined result into the card, in this order.
_CARD_STATS = (
    "rows_in_full_clusters_share",
    "hardness_batch_size",
    "hardness_b3",
    "hardness_random",
    "edges",
    "isolated_rows",
)


def ordering_entry(result: MinedResult, config_name: str) -> dict[str, Any]:
    """Return the card's YAML entry for one ordering: where it is, what it was mined on and with what."""
    config = result.config
    source = result.metadata.get("source", {})
    stats = result.stats
    entry: dict[str, Any] = {
        "config_name": config_name,
        "path": config_name,
        "rows": result.rows,
        "fingerprint": result.fingerprint,
        "source_dataset": {key: source[key] for key in sorted(source)},
        "teacher": config.teacher,
        "teacher_revision": config.teacher_revision,
        "p": config.skip_top,
        "m": config.window_size,
        "K": config.cluster_size,
        "seed": config.seed,
        "edges": config.edges,
        "isolated_rows": config.isolated_rows,
        "community_backend": config.community_backend,
        "anchor_column": result.metadata.get("anchor_column"),
        "positive_column": result.metadata.get("positive_column"),
        "stats": {key: stats[key] for key in _CARD_STATS if key in stats},
    }
    if config.relative_margin is not None:
        entry["relative_margin"] = config.relative_margin
    return entry


def build_card(existing: DatasetCard | None, entry: dict[str, Any], repo_id: str) -> DatasetCard:
    """Return the repo's card with ``entry`` added, or replacing the entry of the same config name.

    Metadata keys that b3_st does not write (a license, extra tags) are kept. The card's text is
    regenerated from the list of orderings, so hand edits below the YAML header are replaced.
    """
    data = existing.data.to_dict() if existing is not None else {}

    orderings = [item for item in data.get(ORDERINGS_KEY) or [] if item.get("config_name") != entry["config_name"]]
    orderings.append(entry)
    orderings.sort(key=lambda item: item["config_name"])

    configs = [item for item in data.get("configs") or [] if item.get("config_name") != entry["config_name"]]
    new_config: dict[str, Any] = {
        "config_name": entry["config_name"],
        "data_files": [{"split": "train", "path": f"{entry['path']}/{CLUSTERS_FILE}"}],
    }
    # datasets.load_dataset(repo_id) without a config name needs exactly one default config. The
    # first ordering pushed keeps that role, so the plain call keeps returning the same data.
    if not any(item.get("default") for item in configs):
        new_config["default"] = True
    configs.append(new_config)
    configs.sort(key=lambda item: item["config_name"])

    tags = list(dict.fromkeys([*(data.get("tags") or []), *CARD_TAGS]))
    data.update({"tags": tags, "configs": configs, ORDERINGS_KEY: orderings})
    data.setdefault("pretty_name", f"B3 mined orderings: {repo_id.split('/')[-1]}")

    card_data = DatasetCardData(**data)
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n{_card_text(repo_id, orderings)}")


def _card_text(repo_id: str, orderings: list[dict[str, Any]]) -> str:
    first = orderings[0]
    rows = "\n".join(_table_row(item) for item in orderings)
    margin_line = ""
    if first.get("relative_margin") is not None:
        margin_line = f"\n    relative_margin={first['relative_margin']!r},"
    return f"""
# B3 mined orderings

This repo contains batch orderings mined with b3_st, which brings
B3 batch mining ([Breaking the Batch Barrier, arXiv 2505.11293](https://arxiv.org/abs/2505.11293))
to sentence-transformers training. A teacher model ranks every row's positive against all others,
rows whose positives rank each other highly form communities, and the communities are cut into
clusters of exactly `K` rows. A batch made of whole clusters contains hard in-batch negatives, while
the `p` top-ranked positives of each row, the likely false negatives, are skipped.

Loading an ordering from here replaces a full teacher pass over the training data.

## Orderings

| Config | Rows | Source dataset | Teacher | p | m | K | Seed | Rows in full clusters | Hardness B3 / random |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

Each config is a folder with `{CLUSTERS_FILE}` (columns `row`: row index in the training data,
`cluster`: cluster id, `window`: the row's rank window of `m` row indices after the `p` skipped
ones, `-1` where the window is short) and `{METADATA_FILE}` (settings, dataset fingerprint,
package versions and statistics). The `{ORDERINGS_KEY}` list in this card's metadata repeats the
settings and statistics of every config.

## Usage

Train on the ordering with b3_st. The sampler checks that the dataset's rows and contents and the
settings match the ordering, and mines again when none in this repo matches:

```python
from b3_st import B3BatchSampler

batch_sampler = B3BatchSampler.bind(
    teacher={first['teacher']!r},
    skip_top={first['p']},
    window_size={first['m']},
    cluster_size={first['K']},{margin_line}
    seed={first['seed']},
    hub_repo_id={repo_id!r},
)
# SentenceTransformerTrainingArguments(..., batch_sampler=batch_sampler)
```

Or load one ordering directly:

```python
from b3_st.hub import load_mined_from_hub

mined = load_mined_from_hub({repo_id!r}, config_name={first['config_name']!r})
```

Look at the clusters without b3_st:

```python
from datasets import load_dataset

clusters = load_dataset({repo_id!r}, {first['config_name']!r}, split="train")
```
"""


def _table_row(item: dict[str, Any]) -> str:
    source = item.get("source_dataset") or {}
    source_text = source.get("repo_id") or source.get("dataset_name") or "unknown"
    if source.get("split"):
        source_text += f" ({source['split']})"
    stats = item.get("stats") or {}
    share = stats.get("rows_in_full_clusters_share")
    share_text = f"{share:.1%}" if isinstance(share, (int, float)) else "n/a"
    hardness = (
        f"{stats['hardness_b3']:.3f} / {stats['hardness_random']:.3f}"
        if "hardness_b3" in stats and "hardness_random" in stats
        else "n/a"
    )
    return (
        f"| `{item['config_name']}` | {item['rows']} | {source_text} | {item['teacher']} | {item['p']} | "
        f"{item['m']} | {item['K']} | {item['seed']} | {share_text} | {hardness} |"
    )
