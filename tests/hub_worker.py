"""Build a B3 sampler on WordNet rows in a fresh process and write its batches as json.

Hub tests run this script as a subprocess to check what a new process, with an empty local cache
or as one rank of a ``torch.distributed`` group, gets from the Hub. With ``WORLD_SIZE`` above 1 it
joins a gloo process group on 127.0.0.1 first (``RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
as torchrun sets them). The Hub token, if any, comes from ``B3_TEST_HUB_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_server import install_loopback_guard  # noqa: E402

install_loopback_guard(raise_error=True)

from conftest import load_wordnet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, required=True, help="WordNet rows sampled with seed 0.")
    parser.add_argument("--teacher", required=True, help="Teacher model folder.")
    parser.add_argument("--batch-size", type=int, default=64, help="Rows per batch.")
    parser.add_argument("--cluster-size", type=int, default=8, help="Rows per cluster (K).")
    parser.add_argument("--repo", default=None, help="Hub dataset repo of the ordering.")
    parser.add_argument("--revision", default=None, help="Branch or commit of --repo.")
    parser.add_argument("--push", action="store_true", help="Push a mined ordering to --repo.")
    parser.add_argument("--output", required=True, help="Json file for the batches and what happened.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import torch.distributed

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        torch.distributed.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=world)

    import b3_st.hub_cache
    from b3_st import B3BatchSampler, B3Config

    mined_calls = []
    original_mine = b3_st.hub_cache.mine

    def counting_mine(*arguments, **keywords):
        mined_calls.append(1)
        return original_mine(*arguments, **keywords)

    b3_st.hub_cache.mine = counting_mine

    dataset = load_wordnet(rows=args.rows, seed=0)
    config = B3Config(
        teacher=args.teacher,
        cluster_size=args.cluster_size,
        show_progress_bar=False,
        hub_repo_id=args.repo,
        hub_revision=args.revision,
        push_to_hub=args.push,
        hub_token=os.environ.get("B3_TEST_HUB_TOKEN"),
    )
    sampler = B3BatchSampler(dataset, batch_size=args.batch_size, drop_last=False, config=config)

    report = {
        "rank": int(os.environ.get("RANK", "0")),
        "mined": len(mined_calls),
        "hub": sampler.mined.metadata.get("hub"),
        "source": sampler.mined.metadata.get("source"),
        "epochs": {str(epoch): sampler.epoch_batches(epoch) for epoch in (0, 1)},
    }
    Path(args.output).write_text(json.dumps(report), encoding="utf-8")

    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
