"""Pushing mined orderings to a Hub dataset repo and loading them back, against a local test Hub server."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError

import b3_st.hub_cache
from b3_st import B3BatchSampler, B3Config, B3TrainingArguments, MinedResult, MinedResultMismatchError, mine
from b3_st.cache import mined_dir
from b3_st.data import read_pairs
from b3_st.hub import (
    HubUnavailableError,
    MinedResultNotFoundError,
    default_config_name,
    hub_dataset_source,
    list_mined_on_hub,
    load_mined_from_hub,
    ordering_key,
    push_mined,
)
from b3_st.result import CLUSTERS_FILE, METADATA_FILE
from tests.conftest import load_wordnet
from tests.hub_server import (
    HubServer,
    client_environment,
    install_loopback_guard,
    non_loopback_requests,
    use_server_in_process,
)

TOKEN = "hf_test_token_alice_0123456789"
REPO = "alice/b3-orderings"
TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


install_loopback_guard()


@pytest.fixture(autouse=True)
def _only_loopback():
    """Fail a test whose process looked up or connected to any host but 127.0.0.1."""
    non_loopback_requests.clear()
    yield
    assert non_loopback_requests == []


def start_server(monkeypatch: pytest.MonkeyPatch, hf_home: Path, **options) -> HubServer:
    server = HubServer(tokens={TOKEN: "alice"}, **options).start()
    use_server_in_process(monkeypatch, server.url, hf_home)
    return server


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    server = start_server(monkeypatch, tmp_path / "hf_home")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_rows():
    return load_wordnet(rows=1000, seed=0)


def tiny_config(teacher: str, **settings) -> B3Config:
    return B3Config(teacher=teacher, show_progress_bar=False, **settings)


@pytest.fixture(scope="module")
def mined_k8(small_rows, tiny_teacher_path) -> MinedResult:
    return mine(small_rows, tiny_config(tiny_teacher_path))


@pytest.fixture(scope="module")
def mined_k16(small_rows, tiny_teacher_path) -> MinedResult:
    return mine(small_rows, tiny_config(tiny_teacher_path, cluster_size=16))


def fresh(result: MinedResult) -> MinedResult:
    """Return a copy, because a push records its Hub source in the result it was given."""
    return copy.deepcopy(result)


def repo_files(server: HubServer, commit: str, repo_id: str = REPO) -> dict[str, bytes]:
    return server.repos[("dataset", repo_id)].commits[commit].files


def card_metadata(readme: bytes) -> dict:
    text = readme.decode("utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def files_containing(folder: Path, needle: bytes) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and needle in path.read_bytes()]


# Settings and names


def test_config_hides_hub_token(tiny_teacher_path):
    config = tiny_config(tiny_teacher_path, hub_repo_id=REPO, push_to_hub=True, hub_token=TOKEN)

    assert TOKEN not in repr(config)
    assert "hub_token" not in config.to_dict()
    assert TOKEN not in repr(B3BatchSampler.bind(config))
    assert not any(name.startswith("hub_") or name == "push_to_hub" for name in config.result_settings())
    assert config.settings_key() == tiny_config(tiny_teacher_path).settings_key()


def test_training_arguments_pass_hub_settings(tmp_path):
    args = B3TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=64, b3_hub_repo_id=REPO,
                               b3_hub_revision="v1", b3_push_to_hub=True, b3_hub_private=True, hub_token=TOKEN)
    config = args.batch_sampler.config

    assert config.hub_repo_id == REPO
    assert config.hub_revision == "v1"
    assert config.push_to_hub
    assert config.hub_private
    assert config.hub_token == TOKEN
    assert TOKEN not in args.to_json_string()
    assert TOKEN not in repr(args.batch_sampler)


def test_config_rejects_bad_hub_settings():
    with pytest.raises(ValueError, match="namespace/name"):
        B3Config(hub_repo_id="no-namespace")
    with pytest.raises(ValueError, match="push_to_hub=True needs hub_repo_id"):
        B3Config(push_to_hub=True)


def test_default_config_name_keyed_by_settings(mined_k8, mined_k16):
    name_k8 = default_config_name(mined_k8)
    name_k16 = default_config_name(mined_k16)

    assert "-p30-m100-k8-" in name_k8
    assert "-p30-m100-k16-" in name_k16
    assert name_k8.endswith(ordering_key(mined_k8.fingerprint, mined_k8.config.settings_key()))
    assert name_k8 != name_k16
    assert default_config_name(fresh(mined_k8)) == name_k8


def test_push_rejects_commit_sha_and_bad_name(hub, mined_k8):
    with pytest.raises(ValueError, match="needs a branch name"):
        push_mined(fresh(mined_k8), REPO, revision="a" * 40, token=TOKEN)
    with pytest.raises(ValueError, match="config_name='bad/name' is invalid"):
        push_mined(fresh(mined_k8), REPO, config_name="bad/name", token=TOKEN)

    assert hub.requests == []


def test_hub_dataset_source_reads_cache_path():
    commit = "4baa47e5e6b06a12cbd92bde5671ca5a27519a0d"

    class Loaded:
        cache_files = [{"filename": f"/cache/datasets/alice___pairs/default/0.0.0/{commit}/pairs-train.arrow"}]

    class Local:
        cache_files = [{"filename": "/cache/datasets/parquet/default-63906e22/0.0.0/" + "ab" * 32 + "/x.arrow"}]

    assert hub_dataset_source(Loaded()) == {"repo_id": "alice/pairs", "revision": commit}
    assert hub_dataset_source(Local()) == {}


# Push and load


def test_push_writes_parquet_metadata_and_card(hub, mined_k8):
    result = fresh(mined_k8)
    info = push_mined(result, REPO, token=TOKEN)

    name = default_config_name(mined_k8)
    assert info.repo_id == REPO
    assert info.revision == "main"
    assert len(info.commit) == 40
    assert info.config_name == name
    assert info.path_in_repo == name
    assert info.url.endswith(info.commit)
    assert result.metadata["hub"] == {"repo_id": REPO, "revision": "main", "commit": info.commit, "path_in_repo": name}

    files = repo_files(hub, info.commit)
    assert {f"{name}/{CLUSTERS_FILE}", f"{name}/{METADATA_FILE}", "README.md"} <= set(files)

    table = pq.read_table(io.BytesIO(files[f"{name}/{CLUSTERS_FILE}"]))
    assert table.column_names == ["row", "cluster", "window"]
    np.testing.assert_array_equal(table.column("cluster").to_numpy(), mined_k8.cluster_ids)

    metadata = json.loads(files[f"{name}/{METADATA_FILE}"])
    assert "hub" not in metadata
    assert metadata["fingerprint"] == mined_k8.fingerprint
    assert metadata["rows"] == 1000
    assert metadata["config"]["cluster_size"] == 8

    card = card_metadata(files["README.md"])
    assert {"b3", "sentence-transformers"} <= set(card["tags"])
    assert card["configs"] == [
        {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/clusters.parquet"}], "default": True}
    ]
    (entry,) = card["b3_orderings"]
    assert entry["teacher"] == mined_k8.config.teacher
    assert (entry["p"], entry["m"], entry["K"], entry["seed"]) == (30, 100, 8, 0)
    assert entry["fingerprint"] == mined_k8.fingerprint
    assert entry["stats"]["rows_in_full_clusters_share"] == mined_k8.stats["rows_in_full_clusters_share"]
    readme = files["README.md"].decode()
    assert "B3BatchSampler.bind(" in readme
    assert f"load_dataset({REPO!r}" in readme


def test_load_returns_pushed_ordering(hub, mined_k8, small_rows):
    info = push_mined(fresh(mined_k8), REPO, token=TOKEN)
    pairs = read_pairs(small_rows)

    loaded = load_mined_from_hub(REPO, config=mined_k8.config, fingerprint=pairs.fingerprint, rows=len(pairs))

    np.testing.assert_array_equal(loaded.cluster_ids, mined_k8.cluster_ids)
    np.testing.assert_array_equal(loaded.windows, mined_k8.windows)
    assert loaded.config.result_settings() == mined_k8.config.result_settings()
    # Json keeps dict keys as strings, as the local cache does.
    assert loaded.stats == json.loads(json.dumps(mined_k8.stats))
    assert loaded.metadata["hub"] == info.hub_metadata()


def test_revision_pins_ordering(hub, mined_k8, mined_k16):
    name = default_config_name(mined_k8)
    first = push_mined(fresh(mined_k8), REPO, token=TOKEN)
    changed = fresh(mined_k8)
    changed.cluster_ids = changed.cluster_ids.max() - changed.cluster_ids
    second = push_mined(changed, REPO, token=TOKEN, config_name=name)
    assert second.commit != first.commit

    pinned = load_mined_from_hub(REPO, revision=first.commit)
    latest = load_mined_from_hub(REPO)
    np.testing.assert_array_equal(pinned.cluster_ids, mined_k8.cluster_ids)
    np.testing.assert_array_equal(latest.cluster_ids, changed.cluster_ids)
    assert pinned.metadata["hub"]["commit"] == first.commit
    assert latest.metadata["hub"]["commit"] == second.commit

    branch = push_mined(fresh(mined_k16), REPO, token=TOKEN, revision="experiment")
    assert branch.revision == "experiment"
    on_branch = load_mined_from_hub(REPO, revision="experiment", config_name=branch.config_name)
    assert on_branch.config.cluster_size == 16
    assert on_branch.metadata["hub"]["revision"] == "experiment"
    with pytest.raises(MinedResultNotFoundError, match=branch.config_name):
        load_mined_from_hub(REPO, config_name=branch.config_name)
    with pytest.raises(MinedResultNotFoundError, match="Revision 'no-such-branch'"):
        load_mined_from_hub(REPO, revision="no-such-branch")


def test_two_configs_in_one_repo(hub, mined_k8, mined_k16, small_rows):
    push_mined(fresh(mined_k8), REPO, token=TOKEN)
    info_k16 = push_mined(fresh(mined_k16), REPO, token=TOKEN)
    pairs = read_pairs(small_rows)

    names = list_mined_on_hub(REPO)
    assert names == sorted([default_config_name(mined_k8), default_config_name(mined_k16)])

    card = card_metadata(repo_files(hub, info_k16.commit)["README.md"])
    assert [config["config_name"] for config in card["configs"]] == names
    assert [config.get("default", False) for config in card["configs"]].count(True) == 1
    assert sorted(entry["K"] for entry in card["b3_orderings"]) == [8, 16]

    loaded = load_mined_from_hub(REPO, config=mined_k16.config, fingerprint=pairs.fingerprint, rows=len(pairs))
    assert loaded.config.cluster_size == 16
    assert loaded.metadata["hub"]["path_in_repo"] == info_k16.path_in_repo

    with pytest.raises(MinedResultNotFoundError, match="contains 2 orderings"):
        load_mined_from_hub(REPO)


def test_hand_named_ordering_found_by_metadata(hub, mined_k8, mined_k16, small_rows):
    push_mined(fresh(mined_k16), REPO, token=TOKEN)
    push_mined(fresh(mined_k8), REPO, token=TOKEN, config_name="my-ordering")
    pairs = read_pairs(small_rows)

    loaded = load_mined_from_hub(REPO, config=mined_k8.config, fingerprint=pairs.fingerprint, rows=len(pairs))

    assert loaded.metadata["hub"]["path_in_repo"] == "my-ordering"
    assert loaded.config.cluster_size == 8


MISMATCHES = [
    ("rows", {"rows": 999}, "999"),
    ("contents", {"fingerprint": "0" * 64}, "other contents"),
    ("teacher", {"teacher": "other/teacher"}, "teacher="),
    ("skip_top", {"skip_top": 20}, "p in the B3 paper"),
    ("window_size", {"window_size": 50}, "m in the B3 paper"),
    ("cluster_size", {"cluster_size": 16}, "K in the B3 paper"),
]


@pytest.mark.parametrize(("field", "change", "text"), MISMATCHES, ids=[case[0] for case in MISMATCHES])
def test_mismatch_names_field(hub, mined_k8, small_rows, field, change, text):
    push_mined(fresh(mined_k8), REPO, token=TOKEN)
    pairs = read_pairs(small_rows)
    fingerprint = change.pop("fingerprint", pairs.fingerprint)
    rows = change.pop("rows", len(pairs))
    config = B3Config.from_dict({**mined_k8.config.to_dict(), **change})

    with pytest.raises(MinedResultMismatchError) as caught:
        load_mined_from_hub(REPO, config=config, fingerprint=fingerprint, rows=rows)

    assert caught.value.field == field
    assert text in str(caught.value)
    assert REPO in str(caught.value)
    assert "mine this dataset" in str(caught.value)


# Private repos and tokens


def test_private_repo_with_and_without_token(hub, mined_k8, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HfHubHTTPError) as no_write:
        push_mined(fresh(mined_k8), REPO, private=True)
    assert no_write.value.response.status_code == 401

    info = push_mined(fresh(mined_k8), REPO, private=True, token=TOKEN)
    assert hub.repos[("dataset", REPO)].private

    with pytest.raises(MinedResultNotFoundError, match="private") as anonymous:
        load_mined_from_hub(REPO)
    with pytest.raises(HfHubHTTPError) as wrong:
        load_mined_from_hub(REPO, token="hf_wrong_token")
    loaded = load_mined_from_hub(REPO, token=TOKEN)

    assert wrong.value.response.status_code == 401
    assert loaded.metadata["hub"]["commit"] == info.commit
    for text in (str(no_write.value), str(anonymous.value), str(wrong.value), caplog.text):
        assert TOKEN not in text
    stored = b"".join(b"".join(commit.files.values()) for commit in hub.repos[("dataset", REPO)].commits.values())
    assert TOKEN.encode() not in stored


def test_sampler_token_never_written(hub, small_rows, tiny_teacher_path, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache"
    config = tiny_config(tiny_teacher_path, cache_dir=str(cache), hub_repo_id=REPO, push_to_hub=True,
                         hub_private=True, hub_token=TOKEN)

    sampler = B3BatchSampler(small_rows, batch_size=64, drop_last=False, config=config)

    assert sampler.mined.metadata["hub"]["repo_id"] == REPO
    assert TOKEN not in caplog.text
    assert files_containing(tmp_path, TOKEN.encode()) == []


# Sampler: local cache, then Hub, then mining


def test_sampler_loads_from_hub_instead_of_mining(hub, small_rows, tiny_teacher_path, tmp_path, monkeypatch):
    first = B3BatchSampler(small_rows, batch_size=64, drop_last=False, config=tiny_config(
        tiny_teacher_path, cache_dir=str(tmp_path / "first"), hub_repo_id=REPO, push_to_hub=True, hub_token=TOKEN))
    pushed = first.mined.metadata["hub"]
    local_copy = MinedResult.load(mined_dir(str(tmp_path / "first"), first.mined.fingerprint,
                                            first.config.settings_key()))
    assert local_copy.metadata["hub"] == pushed

    def no_mining(*arguments, **keywords):
        raise AssertionError("the sampler mined although the Hub holds the ordering")

    monkeypatch.setattr(b3_st.hub_cache, "mine", no_mining)
    second_config = tiny_config(tiny_teacher_path, cache_dir=str(tmp_path / "second"), hub_repo_id=REPO)
    second = B3BatchSampler(small_rows, batch_size=64, drop_last=False, config=second_config)

    assert second.mined.metadata["hub"] == pushed
    for epoch in (0, 1):
        assert second.epoch_batches(epoch) == first.epoch_batches(epoch)

    hub.stop()
    third = B3BatchSampler(small_rows, batch_size=64, drop_last=False, config=second_config)
    assert third.epoch_batches(0) == first.epoch_batches(0)
    assert third.mined.metadata["hub"] == pushed


def test_explicit_config_name_mismatch_raises(hub, mined_k16, small_rows, tiny_teacher_path, tmp_path):
    info = push_mined(fresh(mined_k16), REPO, token=TOKEN)
    config = tiny_config(tiny_teacher_path, cache_dir=str(tmp_path), hub_repo_id=REPO,
                         hub_config_name=info.config_name)

    with pytest.raises(MinedResultMismatchError) as caught:
        B3BatchSampler(small_rows, batch_size=64, drop_last=False, config=config)

    assert caught.value.field == "cluster_size"


def test_server_stopped_mid_push_keeps_local_result(small_rows, tiny_teacher_path, tmp_path, monkeypatch, caplog):
    server = start_server(monkeypatch, tmp_path / "hf_home", stop_on=lambda method, path: "/commit/" in path)
    cache = tmp_path / "cache"
    config = tiny_config(tiny_teacher_path, cache_dir=str(cache), hub_repo_id=REPO, push_to_hub=True, hub_token=TOKEN)

    with caplog.at_level(logging.WARNING, logger="b3_st"):
        sampler = B3BatchSampler(small_rows, batch_size=64, drop_last=False, config=config)

    assert server.stopped.is_set()
    assert ("POST", f"/api/datasets/{REPO}/commit/main") in server.requests
    assert "Pushing the mined result" in caplog.text
    assert "hub" not in sampler.mined.metadata
    folder = mined_dir(str(cache), sampler.mined.fingerprint, config.settings_key())
    saved = MinedResult.load(folder)
    np.testing.assert_array_equal(saved.cluster_ids, sampler.mined.cluster_ids)
    assert [path.name for path in folder.parent.iterdir()] == [folder.name]
    assert len(sampler) == 16

    with pytest.raises(HubUnavailableError, match="cannot be reached"):
        push_mined(fresh(saved), REPO, token=TOKEN)
    with pytest.raises(HubUnavailableError, match="cannot be reached"):
        load_mined_from_hub(REPO, token=TOKEN)


def test_offline_mode_makes_no_request(hub, mined_k8, small_rows, tiny_teacher_path, tmp_path, monkeypatch, caplog):
    push_mined(fresh(mined_k8), REPO, token=TOKEN)
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        load_mined_from_hub(REPO, token=TOKEN)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        push_mined(fresh(mined_k8), REPO, token=TOKEN)
    config = tiny_config(tiny_teacher_path, cache_dir=str(tmp_path / "cache"), hub_repo_id=REPO, push_to_hub=True,
                         hub_token=TOKEN)
    with caplog.at_level(logging.WARNING, logger="b3_st"):
        sampler = B3BatchSampler(small_rows, batch_size=64, drop_last=False, config=config)

    assert hub.requests == []
    assert "HF_HUB_OFFLINE" in caplog.text
    np.testing.assert_array_equal(sampler.mined.cluster_ids, mined_k8.cluster_ids)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        load_mined_from_hub(REPO, token=TOKEN)
    assert hub.requests == []


# Fresh processes: datasets, round trip and distributed ranks


def run_python(arguments: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, *arguments], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def process_env(server: HubServer, tmp_path: Path, name: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(client_environment(server.url, tmp_path / f"{name}_hf_home"))
    env["B3_ST_CACHE"] = str(tmp_path / f"{name}_b3_cache")
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


LOAD_DATASET_SCRIPT = """
import json, sys
from tests.hub_server import install_loopback_guard

install_loopback_guard(raise_error=True)
import datasets
from b3_st.hub import hub_dataset_source

# The test server does not emulate the dataset viewer, whose parquet export datasets asks first.
datasets.config.USE_PARQUET_EXPORT = False
repo_id, name = sys.argv[1], sys.argv[2]
default = datasets.load_dataset(repo_id, split="train")
named = datasets.load_dataset(repo_id, name, split="train")
print(json.dumps({
    "columns": default.column_names,
    "default": list(default["cluster"]),
    "named": list(named["cluster"]),
    "window_length": len(named[0]["window"]),
    "source": hub_dataset_source(named),
}))
"""


def test_load_dataset_reads_pushed_repo(hub, mined_k8, mined_k16, tmp_path):
    first = push_mined(fresh(mined_k8), REPO, token=TOKEN)
    second = push_mined(fresh(mined_k16), REPO, token=TOKEN)

    completed = run_python(["-c", LOAD_DATASET_SCRIPT, REPO, second.config_name],
                           process_env(hub, tmp_path, "datasets"))
    report = json.loads(completed.stdout.strip().splitlines()[-1])

    assert report["columns"] == ["row", "cluster", "window"]
    assert report["default"] == mined_k8.cluster_ids.tolist()
    assert report["named"] == mined_k16.cluster_ids.tolist()
    assert report["window_length"] == 100
    assert report["source"] == {"repo_id": REPO, "revision": second.commit}
    assert first.commit != second.commit


@pytest.mark.parametrize("teacher_fixture", [
    "tiny_teacher_path",
    pytest.param("minilm_path", marks=pytest.mark.slow),
])
def test_round_trip_in_fresh_process(hub, wordnet_small, teacher_fixture, request, tmp_path):
    teacher = request.getfixturevalue(teacher_fixture)
    config = tiny_config(teacher, cache_dir=str(tmp_path / "origin"), hub_repo_id=REPO, push_to_hub=True,
                         hub_token=TOKEN)
    original = B3BatchSampler(wordnet_small, batch_size=64, drop_last=False, config=config)
    output = tmp_path / "fresh.json"

    env = process_env(hub, tmp_path, "fresh")
    run_python([str(TESTS_DIR / "hub_worker.py"), "--rows", "2000", "--teacher", teacher,
                "--repo", REPO, "--output", str(output)], env)
    report = json.loads(output.read_text())

    assert report["mined"] == 0
    assert report["hub"] == original.mined.metadata["hub"]
    for epoch in (0, 1):
        assert report["epochs"][str(epoch)] == original.epoch_batches(epoch)
    assert not (Path(env["B3_ST_CACHE"]) / "embeddings").exists()


def run_ranks(server: HubServer, tmp_path: Path, name: str, teacher: str) -> list[dict]:
    env = process_env(server, tmp_path, name)
    env.update({"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
                "B3_TEST_HUB_TOKEN": TOKEN})
    processes = []
    for rank in (0, 1):
        command = [sys.executable, str(TESTS_DIR / "hub_worker.py"), "--rows", "1000", "--teacher", teacher,
                   "--repo", REPO, "--push", "--output", str(tmp_path / f"{name}_{rank}.json")]
        processes.append(subprocess.Popen(command, env={**env, "RANK": str(rank)}, cwd=REPO_ROOT,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-4000:]
    return [json.loads((tmp_path / f"{name}_{rank}.json").read_text()) for rank in (0, 1)]


def test_distributed_only_rank_zero_mines_and_pushes(hub, tiny_teacher_path, tmp_path):
    mined = run_ranks(hub, tmp_path, "mine", tiny_teacher_path)

    assert [report["mined"] for report in mined] == [1, 0]
    assert mined[0]["epochs"] == mined[1]["epochs"]
    assert mined[0]["hub"] == mined[1]["hub"]
    commits = [request for request in hub.requests if request[0] == "POST" and "/commit/" in request[1]]
    assert len(commits) == 1

    hub.requests.clear()
    downloaded = run_ranks(hub, tmp_path, "download", tiny_teacher_path)

    assert [report["mined"] for report in downloaded] == [0, 0]
    assert downloaded[0]["epochs"] == mined[0]["epochs"]
    parquet_gets = [request for request in hub.requests if request[0] == "GET" and request[1].endswith(CLUSTERS_FILE)]
    assert len(parquet_gets) == 1
    assert not any("/commit/" in path for _, path in hub.requests)
