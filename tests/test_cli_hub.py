"""``b3-st mine --push-to-hub``, ``b3-st push`` and rebuilding a sampler from the Hub ordering.

These tests need ``b3_st.hub`` and the Hub-compatible test server ``tests/hub_server.py``, which
come with the Hub cache module. Every process talks only to that server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO_ROOT, WORDNET_DIR
from hub_server import HubServer, client_environment

TOKEN = "cards-test-token"
ROWS = 600
WORDNET_FILE = str(WORDNET_DIR / "definition_words_train.parquet")

TRAIN_SCRIPT = """
import json, sys, torch
sys.path.insert(0, {tests!r})
from conftest import load_wordnet
from test_model_card import _student
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from b3_st import B3TrainingArguments

model = _student({minilm!r})
args = B3TrainingArguments(output_dir={run!r}, per_device_train_batch_size=32, max_steps=2, seed=7, report_to="none",
                           save_strategy="no", use_cpu=True, b3_teacher={teacher!r}, b3_skip_top=5, b3_window_size=20,
                           b3_cluster_size=8)
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=load_wordnet(rows={rows}, seed=None),
                                     loss=MultipleNegativesRankingLoss(model))
trainer.train()
sampler = trainer._train_dataloader.batch_sampler
model.save_pretrained({model_folder!r})
print(json.dumps({{"epoch_0": sampler.epoch_batches(0), "epoch_1": sampler.epoch_batches(1)}}))
"""

REBUILD_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import load_wordnet
from b3_st import load_sampler_from_model

sampler = load_sampler_from_model({model_folder!r}, load_wordnet(rows={rows}, seed=None), token={token!r},
                                  show_progress_bar=False)
print(json.dumps({{"epoch_0": sampler.epoch_batches(0), "epoch_1": sampler.epoch_batches(1),
                   "hub": sampler.mined.metadata.get("hub")}}))
"""


@pytest.fixture(scope="module")
def server():
    hub = HubServer(tokens={TOKEN: "alice"}).start()
    yield hub
    hub.stop()


def _environment(server: HubServer, folder: Path, name: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    environment.update(client_environment(server.url, folder / f"{name}_hf_home"))
    environment["B3_ST_CACHE"] = str(folder / f"{name}_b3_cache")
    environment["PYTHONPATH"] = str(REPO_ROOT)
    return environment


def _run(arguments: list[str], environment: dict[str, str]) -> str:
    completed = subprocess.run([sys.executable, *arguments], env=environment, capture_output=True, text=True,
                               timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout


def test_pushed_ordering_rebuilds_from_hub(server, tmp_path, tiny_teacher_path, minilm_path):
    trainer_side = _environment(server, tmp_path, "trainer")
    mined = tmp_path / "mined"
    output = _run(["-m", "b3_st", "-q", "--no-progress", "mine", WORDNET_FILE, "--rows", str(ROWS), "--teacher",
                   tiny_teacher_path, "-p", "5", "-m", "20", "-k", "8", "--batch-size", "32", "--output", str(mined),
                   "--push-to-hub", "alice/orderings", "--token", TOKEN], trainer_side)
    assert "Pushed to alice/orderings" in output
    assert json.loads((mined / "b3_metadata.json").read_text())["hub"]["repo_id"] == "alice/orderings"

    model_folder = tmp_path / "model"
    script = TRAIN_SCRIPT.format(tests=str(REPO_ROOT / "tests"), minilm=minilm_path, run=str(tmp_path / "run"),
                                 teacher=tiny_teacher_path, rows=ROWS, model_folder=str(model_folder))
    original = json.loads(_run(["-c", textwrap.dedent(script)], trainer_side).strip().splitlines()[-1])

    readme = (model_folder / "README.md").read_text(encoding="utf-8")
    assert "Hub dataset [alice/orderings](https://huggingface.co/datasets/alice/orderings)" in readme
    ordering = json.loads((model_folder / "b3_config.json").read_text())["samplers"][0]["ordering"]
    assert ordering["location"] == "hub"
    assert ordering["repo_id"] == "alice/orderings"

    # A fresh process with empty b3_st and Hub caches has only the Hub copy of the ordering.
    other_side = _environment(server, tmp_path, "other")
    script = REBUILD_SCRIPT.format(tests=str(REPO_ROOT / "tests"), model_folder=str(model_folder), rows=ROWS,
                                   token=TOKEN)
    rebuilt = json.loads(_run(["-c", textwrap.dedent(script)], other_side).strip().splitlines()[-1])
    assert rebuilt["epoch_0"] == original["epoch_0"]
    assert rebuilt["epoch_1"] == original["epoch_1"]
    assert rebuilt["hub"]["repo_id"] == "alice/orderings"

    described = _run(["-m", "b3_st", "reproduce", str(model_folder)], other_side)
    assert "Ordering: Hub dataset alice/orderings" in described


def test_push_command_records_location(server, tmp_path, tiny_teacher_path):
    environment = _environment(server, tmp_path, "pusher")
    mined = tmp_path / "mined"
    _run(["-m", "b3_st", "-q", "--no-progress", "mine", WORDNET_FILE, "--rows", str(ROWS), "--teacher",
          tiny_teacher_path, "-p", "5", "-m", "20", "-k", "8", "--batch-size", "32", "--output", str(mined)],
         environment)

    output = _run(["-m", "b3_st", "-q", "push", str(mined), "alice/pushed", "--token", TOKEN], environment)

    assert "Pushed to alice/pushed" in output
    hub = json.loads((mined / "b3_metadata.json").read_text())["hub"]
    assert hub["repo_id"] == "alice/pushed"
    cached = list(Path(environment["B3_ST_CACHE"], "mined").glob("*/b3_metadata.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text())["hub"]["commit"] == hub["commit"]
