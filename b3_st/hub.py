"""Push mined orderings to a Hugging Face Hub dataset repo and load them back.

A repo can contain several orderings (other data, teacher, ``p``, ``m`` or ``K``), each in its own
folder with ``clusters.parquet`` and ``b3_metadata.json``. The dataset card lists every folder as
a ``datasets`` config, so ``datasets.load_dataset(repo_id, config_name)`` reads the clusters
without b3_st. Every request goes through ``huggingface_hub``'s own client, which reads
``HF_ENDPOINT`` and the saved token as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi, constants
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from b3_st.config import B3Config
from b3_st.hub_card import build_card, ordering_entry
from b3_st.result import CLUSTERS_FILE, METADATA_FILE, MinedResult, MinedResultMismatchError

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
CARD_FILE = "README.md"
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_PACKAGED_BUILDERS = {"parquet", "json", "csv", "arrow", "text", "generator", "pandas", "sql", "webdataset"}
_COMMIT_ATTEMPTS = 3


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Return the connection and timeout errors of the HTTP client that huggingface_hub uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    # huggingface_hub 2.x sends requests with httpx2, 1.x with httpx and 0.x with requests.
    try:
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.TransportError)
    except ImportError:
        pass
    try:
        import requests

        errors.extend([requests.exceptions.ConnectionError, requests.exceptions.Timeout])
    except ImportError:
        pass
    return tuple(errors)


_TRANSPORT_ERRORS = _transport_errors()


class HubUnavailableError(ConnectionError):
    """The Hub cannot be reached: offline mode is set, the connection failed or the Hub returned a 5xx status."""


class MinedResultNotFoundError(FileNotFoundError):
    """The Hub repo, the revision, or an ordering that fits the request was not found."""


@dataclass(frozen=True)
class HubPushInfo:
    """Location of a pushed ordering on the Hub.

    Attributes:
        repo_id: Hub dataset repo.
        revision: Branch that the commit went to.
        commit: Commit sha, which pins the ordering for later loads.
        config_name: ``datasets`` config name of the ordering.
        path_in_repo: Folder of ``clusters.parquet`` and ``b3_metadata.json`` in the repo.
        url: Web address of the commit.
    """

    repo_id: str
    revision: str
    commit: str
    config_name: str
    path_in_repo: str
    url: str

    def hub_metadata(self) -> dict[str, str]:
        """Return the ``metadata["hub"]`` entry that records this source in the result."""
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
                "path_in_repo": self.path_in_repo}


def hub_offline() -> bool:
    """Return whether Hub requests are disabled by ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``).

    huggingface_hub reads the variable once, at import. This function reads the environment again
    at call time, so setting the variable later in the process also stops b3_st's requests.
    """
    if constants.is_offline_mode():
        return True
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


@contextmanager
def _hub_errors(action: str, repo_id: str) -> Iterator[None]:
    """Turn offline, connection and server errors of ``action`` into :class:`HubUnavailableError`."""
    if hub_offline():
        raise HubUnavailableError(
            f"Cannot {action} {repo_id}: HF_HUB_OFFLINE is set, so no Hub request is made. "
            "Unset HF_HUB_OFFLINE to use the Hub."
        )
    try:
        yield
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise
    except OfflineModeIsEnabled as error:
        raise HubUnavailableError(f"Cannot {action} {repo_id}: Hub offline mode is enabled ({error}).") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status is not None and status >= 500:
            raise HubUnavailableError(
                f"Cannot {action} {repo_id}: the Hub returned HTTP {status}. Try again later."
            ) from error
        raise
    except LocalEntryNotFoundError as error:
        # hf_hub_download raises this when the connection fails and no local copy exists.
        raise HubUnavailableError(f"Cannot {action} {repo_id}: the Hub cannot be reached ({error}).") from error
    except _TRANSPORT_ERRORS as error:
        raise HubUnavailableError(
            f"Cannot {action} {repo_id}: the Hub cannot be reached ({type(error).__name__}: {error})."
        ) from error


def _api(token: str | bool | None) -> HfApi:
    from b3_st import __version__

    return HfApi(token=token, library_name="b3_st", library_version=__version__)


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-._")
    return slug or "x"


def ordering_key(fingerprint: str, settings_key: str) -> str:
    """Return the 8-character key of a dataset fingerprint and settings, the suffix of default config names."""
    return hashlib.sha256(f"{fingerprint}:{settings_key}".encode()).hexdigest()[:8]


def default_config_name(result: MinedResult) -> str:
    """Return a config name from the source dataset, teacher, ``p``, ``m``, ``K`` and a key of the rest.

    For example ``natural-questions-train-all-minilm-l6-v2-p30-m100-k8-1f2e3d4c``. The final key
    hashes the dataset fingerprint and every setting that changes the result, so two orderings get
    the same name only when they are the same ordering. A loader can therefore find the ordering of
    its dataset and settings from the name alone.
    """
    source = result.metadata.get("source", {})
    if source.get("repo_id"):
        dataset_name = str(source["repo_id"]).split("/")[-1]
    elif source.get("dataset_name") and source["dataset_name"] not in _PACKAGED_BUILDERS:
        dataset_name = str(source["dataset_name"])
    else:
        dataset_name = "data"
    parts = [dataset_name]
    if source.get("split"):
        parts.append(str(source["split"]))

    config = result.config
    teacher = Path(config.teacher.rstrip("/")).name or config.teacher
    parts += [teacher, f"p{config.skip_top}", f"m{config.window_size}", f"k{config.cluster_size}"]
    name = "-".join(_slug(part) for part in parts)[:80].rstrip("-._")
    return f"{name}-{ordering_key(result.fingerprint, config.settings_key())}"


def _check_config_name(config_name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", config_name):
        raise ValueError(
            f"config_name={config_name!r} is invalid: use up to 96 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, because it names a folder of the repo and a datasets config."
        )
    return config_name


def _write_ordering(result: MinedResult, folder: Path) -> None:
    """Write the ordering's parquet and metadata json, without the local-only ``hub`` entry."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(result.to_table(), folder / CLUSTERS_FILE)
    metadata = result.metadata_json()
    metadata.pop("hub", None)
    with open(folder / METADATA_FILE, "w", encoding="utf-8") as file:
        json.dump(metadata, file, indent=2, sort_keys=True)


def _read_card(api: HfApi, repo_id: str, commit: str, files: list[str], workdir: Path) -> DatasetCard | None:
    if CARD_FILE not in files:
        return None
    path = api.hf_hub_download(repo_id, CARD_FILE, repo_type=REPO_TYPE, revision=commit,
                               local_dir=workdir / "card")
    return DatasetCard.load(path)


def push_mined(
    result: MinedResult,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    config_name: str | None = None,
    commit_message: str | None = None,
) -> HubPushInfo:
    """Push a mined ordering to a Hub dataset repo, creating the repo and branch when missing.

    One commit adds ``{config_name}/clusters.parquet``, ``{config_name}/b3_metadata.json`` and
    the updated dataset card, so readers never see half a push. An ordering already in the repo
    under the same config name is replaced. On success ``result.metadata["hub"]`` records the repo,
    branch, commit and folder.

    Args:
        result: The mined result to share.
        repo_id: Hub dataset repo, ``"namespace/name"``.
        revision: Branch to commit to, created from ``main`` when missing. ``None`` uses ``main``.
        private: Visibility of the repo when this push creates it; an existing repo keeps its own.
        token: Hub token with write access. ``None`` uses the saved login or ``HF_TOKEN``.
        config_name: Folder and ``datasets`` config of the ordering. ``None`` uses
            :func:`default_config_name`.
        commit_message: Commit title. ``None`` writes one from the config name.

    Raises:
        HubUnavailableError: ``HF_HUB_OFFLINE`` is set, or the Hub cannot be reached.
        huggingface_hub.errors.HfHubHTTPError: The Hub rejected the push (no write access, for example).
    """
    branch = revision or constants.DEFAULT_REVISION
    if _COMMIT_SHA.match(branch):
        raise ValueError(f"revision={revision!r} is a commit sha, but a push needs a branch name: pass a branch.")
    name = _check_config_name(config_name or default_config_name(result))
    message = commit_message or f"Add B3 ordering {name}"
    api = _api(token)

    with _hub_errors("push to", repo_id):
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        if branch != constants.DEFAULT_REVISION:
            api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True)

        with tempfile.TemporaryDirectory(prefix="b3_st-push-") as workdir:
            staging = Path(workdir)
            _write_ordering(result, staging / name)
            commit = _commit_ordering(api, result, repo_id, branch, name, message, staging)

    info = HubPushInfo(repo_id=repo_id, revision=branch, commit=commit.oid, config_name=name, path_in_repo=name,
                       url=commit.commit_url)
    result.metadata["hub"] = info.hub_metadata()
    logger.info("Pushed B3 ordering %s to %s (branch %s, commit %s)", name, repo_id, branch, commit.oid)
    return info


def _commit_ordering(api: HfApi, result: MinedResult, repo_id: str, branch: str, name: str, message: str,
                     staging: Path):
    """Commit the ordering and the merged card on top of the branch head, retrying when the head moves."""
    for attempt in range(1, _COMMIT_ATTEMPTS + 1):
        head = api.dataset_info(repo_id, revision=branch)
        files = [sibling.rfilename for sibling in head.siblings or []]
        card = build_card(_read_card(api, repo_id, head.sha, files, staging), ordering_entry(result, name), repo_id)
        card_path = staging / CARD_FILE
        card_path.write_text(str(card), encoding="utf-8")

        operations = [
            CommitOperationAdd(path_in_repo=f"{name}/{CLUSTERS_FILE}", path_or_fileobj=staging / name / CLUSTERS_FILE),
            CommitOperationAdd(path_in_repo=f"{name}/{METADATA_FILE}", path_or_fileobj=staging / name / METADATA_FILE),
            CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card_path),
        ]
        try:
            # parent_commit makes the Hub reject the commit if another push moved the branch since
            # the card was read, so no other ordering's card entry is lost.
            return api.create_commit(repo_id, operations, commit_message=message, repo_type=REPO_TYPE,
                                     revision=branch, parent_commit=head.sha)
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status not in (409, 412) or attempt == _COMMIT_ATTEMPTS:
                raise
            logger.info("Branch %s of %s moved during the push (HTTP %s); retrying (%d/%d)",
                        branch, repo_id, status, attempt, _COMMIT_ATTEMPTS)
    raise AssertionError("unreachable")


def list_mined_on_hub(repo_id: str, *, revision: str | None = None, token: str | bool | None = None) -> list[str]:
    """Return the folders of the orderings in a Hub repo at ``revision``, sorted."""
    api = _api(token)
    with _hub_errors("list orderings in", repo_id):
        _, folders = _repo_orderings(api, repo_id, revision)
    return folders


def _repo_orderings(api: HfApi, repo_id: str, revision: str | None) -> tuple[str, list[str]]:
    """Return the commit of ``revision`` and the folders that hold an ordering's metadata json."""
    try:
        info = api.dataset_info(repo_id, revision=revision)
    except RepositoryNotFoundError as error:
        raise MinedResultNotFoundError(
            f"Hub dataset repo {repo_id} was not found. Check the repo id; if the repo is private, pass a token "
            "with read access (token=... or hub_token=...) or log in with `hf auth login`."
        ) from error
    except RevisionNotFoundError as error:
        raise MinedResultNotFoundError(
            f"Revision {revision!r} of Hub dataset repo {repo_id} was not found. Pass an existing branch or "
            "commit sha, or None for main."
        ) from error

    suffix = "/" + METADATA_FILE
    folders = sorted(
        sibling.rfilename[: -len(suffix)] for sibling in info.siblings or [] if sibling.rfilename.endswith(suffix)
    )
    return info.sha, folders


def _download_ordering(api: HfApi, repo_id: str, commit: str, folder: str, workdir: Path) -> MinedResult:
    for filename in (METADATA_FILE, CLUSTERS_FILE):
        api.hf_hub_download(repo_id, f"{folder}/{filename}", repo_type=REPO_TYPE, revision=commit, local_dir=workdir)
    return MinedResult.load(workdir / folder)


def _download_metadata(api: HfApi, repo_id: str, commit: str, folder: str, workdir: Path) -> dict[str, Any]:
    path = api.hf_hub_download(repo_id, f"{folder}/{METADATA_FILE}", repo_type=REPO_TYPE, revision=commit,
                               local_dir=workdir / "metadata")
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _matches(metadata: dict[str, Any], fingerprint: str | None, rows: int | None, config: B3Config | None) -> bool:
    if fingerprint is not None and metadata.get("fingerprint") != fingerprint:
        return False
    if rows is not None and metadata.get("rows") != rows:
        return False
    if config is not None:
        found = B3Config.from_dict(metadata.get("config", {})).result_settings()
        if found != config.result_settings():
            return False
    return True


def _choose_folder(
    api: HfApi,
    repo_id: str,
    commit: str,
    folders: list[str],
    *,
    config: B3Config | None,
    fingerprint: str | None,
    rows: int | None,
    workdir: Path,
) -> str:
    """Return the folder of the ordering that fits the dataset and settings, or the closest one.

    The closest one fails the later check with an error that names the field that differs.
    """
    if fingerprint is not None and config is not None:
        key = ordering_key(fingerprint, config.settings_key())
        named = [folder for folder in folders if folder.endswith(f"-{key}")]
        if len(named) == 1:
            return named[0]

    if len(folders) == 1 or (fingerprint is None and rows is None and config is None):
        if len(folders) > 1:
            raise MinedResultNotFoundError(
                f"Hub dataset repo {repo_id} contains {len(folders)} orderings ({', '.join(folders)}). "
                "Pass config_name, or the dataset's fingerprint and the config to pick the matching one."
            )
        return folders[0]

    # Names can be chosen by hand, so read every ordering's small metadata json and compare.
    same_data = []
    for folder in folders:
        metadata = _download_metadata(api, repo_id, commit, folder, workdir)
        if _matches(metadata, fingerprint, rows, config):
            return folder
        if _matches(metadata, fingerprint, rows, None):
            same_data.append(folder)
    return same_data[0] if same_data else folders[0]


def load_mined_from_hub(
    repo_id: str,
    *,
    config: B3Config | None = None,
    fingerprint: str | None = None,
    rows: int | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    config_name: str | None = None,
) -> MinedResult:
    """Load a mined ordering from a Hub dataset repo and check it against the training data.

    Without ``config_name`` the ordering whose fingerprint and settings match is chosen; a repo with
    a single ordering needs no hint. The returned result's ``metadata["hub"]`` records the repo,
    revision, resolved commit and folder.

    Args:
        repo_id: Hub dataset repo, ``"namespace/name"``.
        config: Settings of the training run; every setting that changes the result must match.
        fingerprint: Fingerprint of the training data's anchor and positive columns
            (``read_pairs(dataset).fingerprint``); it must match, so reordered or edited rows are
            caught.
        rows: Row count of the training data; it must match.
        revision: Branch, tag or commit sha. A commit pins the exact ordering; ``None`` uses ``main``.
        token: Hub token for private repos. ``None`` uses the saved login or ``HF_TOKEN``.
        config_name: Folder of the ordering in the repo.

    Raises:
        MinedResultNotFoundError: The repo, revision or ``config_name`` does not exist, or the repo
            contains no ordering.
        MinedResultMismatchError: The ordering was mined on other rows or contents, or with another
            teacher, ``p``, ``m``, ``K`` or other setting; ``error.field`` names which.
        HubUnavailableError: ``HF_HUB_OFFLINE`` is set, or the Hub cannot be reached.
    """
    if config_name is not None:
        _check_config_name(config_name)
    api = _api(token)

    with _hub_errors("load an ordering from", repo_id), tempfile.TemporaryDirectory(prefix="b3_st-load-") as workdir:
        commit, folders = _repo_orderings(api, repo_id, revision)
        where = f"{repo_id} at {revision or constants.DEFAULT_REVISION} (commit {commit[:12]})"
        if config_name is not None and config_name not in folders:
            raise MinedResultNotFoundError(
                f"Hub dataset repo {where} has no ordering {config_name!r}; it has "
                f"{', '.join(folders) or 'none'}. Pass one of those, or another revision."
            )
        if not folders:
            raise MinedResultNotFoundError(
                f"Hub dataset repo {where} contains no B3 ordering (no */{METADATA_FILE}). Push one with "
                "b3_st.hub.push_mined, or mine locally."
            )
        folder = config_name or _choose_folder(api, repo_id, commit, folders, config=config,
                                               fingerprint=fingerprint, rows=rows, workdir=Path(workdir))
        result = _download_ordering(api, repo_id, commit, folder, Path(workdir))

    try:
        result.check_matches(fingerprint if fingerprint is not None else result.fingerprint,
                             rows if rows is not None else result.rows, config)
    except MinedResultMismatchError as error:
        raise MinedResultMismatchError(
            f"The ordering {folder!r} in Hub dataset repo {where} does not fit the training data: {error} "
            f"The repo contains {', '.join(folders)}. Load a matching one with config_name=..., or mine this "
            "dataset (and push it with push_to_hub=True).",
            field=error.field,
        ) from error

    result.metadata["hub"] = {"repo_id": repo_id, "revision": revision or constants.DEFAULT_REVISION,
                              "commit": commit, "path_in_repo": folder}
    logger.info("Loaded B3 ordering %s from %s", folder, where)
    return result


def hub_dataset_source(dataset: Any) -> dict[str, str]:
    """Return the Hub repo id and commit that ``dataset`` was loaded from, when its cache path shows them.

    ``datasets.load_dataset`` caches a Hub dataset under ``{namespace}___{name}/{config}/{version}/{commit}/``.
    """
    # NOTE: this reads the datasets 2.x-5.x cache layout; data built in memory, or loaded from a
    # dataset without a namespace, has no recorded source.
    for cache_file in getattr(dataset, "cache_files", None) or []:
        parts = Path(cache_file.get("filename", "")).parts
        for index, part in enumerate(parts[:-4]):
            namespace, separator, name = part.partition("___")
            if separator and namespace and name and _COMMIT_SHA.match(parts[index + 3]):
                return {"repo_id": f"{namespace}/{name}", "revision": parts[index + 3]}
    return {}
