"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, for tests that must not reach the real Hub.

It implements the part of the Hub HTTP API that the unmodified ``huggingface_hub`` 2.4 client and
``datasets`` 5.2 call to create a repo, commit files, resolve revisions, list trees and download
files: ``/api/repos/create``, repo info, ``preupload``, ``commit`` (ndjson), ``branch``, ``refs``,
``tree``, ``paths-info``, ``commits``, ``validate-yaml`` and ``resolve``. Storage is in memory and
git-less: each commit is a full snapshot of path to bytes, named by a SHA-1 of its contents.

``preupload`` returns ``"regular"`` for every file, so the client sends file contents inline
(base64 in the commit's ndjson) and never starts an LFS or Xet transfer. Reads of a private repo
and all writes need a token from ``tokens``; a missing or private repo answers as the Hub does,
with the ``X-Error-Code`` header that the client turns into ``RepositoryNotFoundError``,
``RevisionNotFoundError`` or ``EntryNotFoundError``.

Run it as a script to try it by hand: ``python tests/hub_server.py`` prints its URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def git_blob_sha(data: bytes) -> str:
    """Return the git blob id of ``data``, the ETag and ``oid`` that the Hub reports for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, bytes]
    title: str
    message: str
    date: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    owner: str
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """Return the commit that a branch name or a full commit sha names, or ``None``."""
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if COMMIT_SHA.match(revision) and revision in self.commits:
            return self.commits[revision]
        return None


class HubRequestError(Exception):
    """An error response: status, Hub error code header and message."""

    def __init__(self, status: int, message: str, error_code: str | None = None,
                 headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.headers = headers or {}
        self.body = body or {}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(value).encode(), {"Content-Type": "application/json"})


class HubServer:
    """In-memory Hub on 127.0.0.1 with a free port; use as a context manager or call ``start``/``stop``.

    Args:
        tokens: Valid access tokens, mapped to the user name that owns them. Writes and reads of
            private repos need one of them.
        stop_on: Called with ``(method, path)`` for each request; when it returns ``True`` the
            server drops that request's connection without a response and shuts down, as a Hub
            that goes away in the middle of an operation would.
    """

    def __init__(self, tokens: dict[str, str] | None = None,
                 stop_on: Callable[[str, str], bool] | None = None) -> None:
        self.tokens = dict(tokens or {})
        self.stop_on = stop_on
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._commit_counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stopped = threading.Event()

    # Life cycle

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("The server is not started: call start() first.")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        server = self

        class Handler(_HubHandler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server; a second call does nothing. New connections are refused once the socket is closed."""
        if self._httpd is None or self.stopped.is_set():
            return
        self.stopped.set()
        httpd = self._httpd
        # shutdown() waits for serve_forever to return, so it must not run on a handler thread that
        # serve_forever is waiting on; a helper thread does it.
        stopper = threading.Thread(target=lambda: (httpd.shutdown(), httpd.server_close()), daemon=True)
        stopper.start()
        if threading.current_thread() is not self._thread:
            stopper.join(timeout=10)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Storage

    def user_for(self, authorization: str | None) -> str | None:
        """Return the user of a ``Bearer`` token; raise 401 for a token that is not valid."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise HubRequestError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def create_repo(self, repo_id: str, repo_type: str, private: bool, owner: str) -> Repo:
        with self.lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                # The client reads the url of the existing repo from this response when exist_ok=True.
                raise HubRequestError(409, "You already created this repo",
                                      body={"url": f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"})
            now = _now()
            repo = Repo(repo_id=repo_id, repo_type=repo_type, private=private, owner=owner, created_at=now)
            # The Hub starts every repo with one commit that adds .gitattributes.
            initial = self._new_commit(repo, None, {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"},
                                       "initial commit", "")
            repo.branches["main"] = initial.sha
            self.repos[key] = repo
            return repo

    def _new_commit(self, repo: Repo, parent: str | None, files: dict[str, bytes], title: str,
                    message: str) -> Commit:
        self._commit_counter += 1
        digest = hashlib.sha1()
        digest.update(f"{repo.repo_type}/{repo.repo_id}\n{parent}\n{title}\n{self._commit_counter}\n".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{git_blob_sha(files[path])}\n".encode())
        commit = Commit(sha=digest.hexdigest(), parent=parent, files=files, title=title, message=message,
                        date=_now())
        repo.commits[commit.sha] = commit
        return commit

    def get_repo(self, repo_type: str, repo_id: str, user: str | None, write: bool = False) -> Repo:
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user is None):
            # The Hub returns 401 for a private repo without a token and 404 for a missing one, both
            # with RepoNotFound, so that a private repo's existence is not revealed.
            status = 401 if repo is not None else 404
            raise HubRequestError(status, "Repository not found", "RepoNotFound")
        if write and user is None:
            raise HubRequestError(401, "You must be authenticated to write to this repo")
        return repo

    def get_commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubRequestError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        with self.hub.lock:
            self.hub.requests.append((method, split.path))
        if self.hub.stop_on is not None and self.hub.stop_on(method, split.path):
            self.close_connection = True
            self.hub.stop()
            return

        try:
            body = self._body() if method == "POST" else b""
            user = self.hub.user_for(self.headers.get("Authorization"))
            response = _route(self.hub, method, split.path, parse_qs(split.query), body, self.headers, user)
        except HubRequestError as error:
            headers = {"X-Error-Message": str(error), **error.headers}
            if error.error_code:
                headers["X-Error-Code"] = error.error_code
            response = Response.json({"error": str(error), **error.body}, status=error.status)
            response.headers.update(headers)

        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if "Content-Length" not in response.headers:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)


_REPO = r"(?P<repo_id>[^/]+/[^/]+)"
_API_REPO = rf"^/api/(?P<kind>models|datasets|spaces)/{_REPO}"


def _route(hub: HubServer, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Message,
           user: str | None) -> Response:
    if method == "POST" and path == "/api/repos/create":
        return _create_repo(hub, json.loads(body or b"{}"), user)
    if method == "POST" and path == "/api/validate-yaml":
        return _validate_yaml(json.loads(body or b"{}"))
    if method == "GET" and path == "/api/agent-harnesses":
        return Response.json({"standardEnvVars": [], "harnesses": {}})
    if method == "GET" and path == "/api/whoami-v2":
        if user is None:
            raise HubRequestError(401, "Invalid credentials in Authorization header")
        return Response.json({"type": "user", "name": user, "auth": {"type": "access_token"}})

    match = re.match(rf"{_API_REPO}(?:/revision/(?P<revision>[^/]+))?$", path)
    if match and method == "GET":
        return _repo_info(hub, match, user)

    match = re.match(rf"{_API_REPO}/(?P<action>preupload|commit|paths-info|tree|refs|branch|commits)"
                     r"(?:/(?P<revision>[^/]+))?(?P<rest>/.*)?$", path)
    if match:
        repo = hub.get_repo(REPO_TYPES[match["kind"]], match["repo_id"], user,
                            write=match["action"] in ("preupload", "commit", "branch"))
        revision = unquote(match["revision"]) if match["revision"] else "main"
        rest = unquote(match["rest"][1:]) if match["rest"] else ""
        action = match["action"]
        if action == "preupload" and method == "POST":
            return _preupload(hub, repo, revision, json.loads(body or b"{}"))
        if action == "commit" and method == "POST":
            return _commit(hub, repo, revision, body, query)
        if action == "paths-info" and method == "POST":
            return _paths_info(hub, repo, revision, body, headers)
        if action == "tree" and method == "GET":
            return _tree(hub, repo, revision, rest, query)
        if action == "refs" and method == "GET":
            return _refs(repo)
        if action == "branch" and method == "POST":
            return _create_branch(hub, repo, revision, json.loads(body or b"{}"))
        if action == "commits" and method == "GET":
            return _commits(hub, repo, revision)

    match = re.match(rf"^/(?P<prefix>datasets/|spaces/)?{_REPO}/resolve/(?P<revision>[^/]+)/(?P<file>.+)$", path)
    if match and method in ("GET", "HEAD"):
        repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(match["prefix"] or "", "model")
        repo = hub.get_repo(repo_type, match["repo_id"], user)
        return _resolve(hub, repo, unquote(match["revision"]), unquote(match["file"]), headers)

    raise HubRequestError(404, f"No route for {method} {path} in the test Hub server")


def _create_repo(hub: HubServer, payload: dict[str, Any], user: str | None) -> Response:
    if user is None:
        raise HubRequestError(401, "You must be authenticated to create a repo")
    organization = payload.get("organization") or user
    repo_id = f"{organization}/{payload['name']}"
    repo_type = payload.get("type") or "model"
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    hub.create_repo(repo_id, repo_type, private, user)
    url = f"{_base_url(hub)}/{URL_PREFIXES[repo_type]}{repo_id}"
    return Response.json({"url": url, "name": repo_id, "id": repo_id})


def _validate_yaml(payload: dict[str, Any]) -> Response:
    content = payload.get("content", "")
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
    if match is None:
        return Response.json({"errors": [], "warnings": [{"message": "Empty or missing yaml metadata"}]})
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        return Response.json({"errors": [{"message": f"Invalid YAML: {error}"}], "warnings": []}, status=400)
    if metadata is not None and not isinstance(metadata, dict):
        return Response.json({"errors": [{"message": "YAML metadata must be a mapping"}], "warnings": []},
                             status=400)
    return Response.json({"errors": [], "warnings": []})


def _card_data(commit: Commit) -> dict[str, Any] | None:
    readme = commit.files.get("README.md")
    if readme is None:
        return None
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", readme.decode("utf-8"), re.DOTALL)
    if match is None:
        return None
    data = yaml.safe_load(match.group(1))
    return data if isinstance(data, dict) else None


def _repo_info(hub: HubServer, match: re.Match, user: str | None) -> Response:
    repo = hub.get_repo(REPO_TYPES[match["kind"]], match["repo_id"], user)
    revision = unquote(match["revision"]) if match["revision"] else "main"
    commit = hub.get_commit(repo, revision)
    card = _card_data(commit)
    return Response.json(
        {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": (card or {}).get("tags", []),
            "cardData": card,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }
    )


def _preupload(hub: HubServer, repo: Repo, revision: str, payload: dict[str, Any]) -> Response:
    commit = hub.get_commit(repo, revision)
    files = []
    for item in payload.get("files", []):
        existing = commit.files.get(item["path"])
        files.append(
            {
                "path": item["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha(existing) if existing is not None else None,
            }
        )
    return Response.json({"files": files, "commitOid": commit.sha})


def _commit(hub: HubServer, repo: Repo, revision: str, body: bytes, query: dict[str, list[str]]) -> Response:
    if query.get("create_pr"):
        raise HubRequestError(400, "The test Hub server does not support pull requests")
    lines = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
    if not lines or lines[0].get("key") != "header":
        raise HubRequestError(400, "The commit payload must start with a header line")
    header = lines[0]["value"]

    with hub.lock:
        if revision not in repo.branches:
            raise HubRequestError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        head = repo.branches[revision]
        parent_commit = header.get("parentCommit")
        if parent_commit is not None and parent_commit != head:
            raise HubRequestError(412, f"A commit has happened since {parent_commit}. Please refresh and try again.")

        files = dict(repo.commits[head].files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubRequestError(400, f"Unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubRequestError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {path: data for path, data in files.items() if not path.startswith(prefix)}
            else:
                raise HubRequestError(400, f"The test Hub server does not support {key!r} operations")

        commit = hub._new_commit(repo, head, files, header.get("summary", ""), header.get("description", ""))
        repo.branches[revision] = commit.sha

    url = f"{_base_url(hub)}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}/commit/{commit.sha}"
    return Response.json({"success": True, "commitOid": commit.sha, "commitUrl": url, "pullRequestUrl": None})


def _create_branch(hub: HubServer, repo: Repo, branch: str, payload: dict[str, Any]) -> Response:
    with hub.lock:
        if branch in repo.branches:
            raise HubRequestError(409, f"Branch {branch} already exists")
        start = hub.get_commit(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.sha
    return Response.json({})


def _refs(repo: Repo) -> Response:
    branches = [
        {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha} for name, sha in sorted(repo.branches.items())
    ]
    return Response.json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})


def _commits(hub: HubServer, repo: Repo, revision: str) -> Response:
    commit: Commit | None = hub.get_commit(repo, revision)
    history = []
    while commit is not None:
        history.append(
            {"id": commit.sha, "title": commit.title, "message": commit.message, "date": commit.date,
             "authors": [{"user": repo.owner}]}
        )
        commit = repo.commits.get(commit.parent) if commit.parent else None
    return Response.json(history)


def _entries(commit: Commit) -> dict[str, dict[str, Any]]:
    """Return the tree entries (files and folders) of a commit by path."""
    entries: dict[str, dict[str, Any]] = {}
    for path, data in commit.files.items():
        entries[path] = {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": path}
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            entries.setdefault(folder, {"type": "directory", "oid": "", "size": 0, "path": folder})
    for path, entry in entries.items():
        if entry["type"] == "directory":
            children = sorted(name for name in commit.files if name.startswith(path + "/"))
            entry["oid"] = hashlib.sha1("\n".join(children).encode()).hexdigest()
    return entries


def _with_last_commit(entry: dict[str, Any], commit: Commit) -> dict[str, Any]:
    return {**entry, "lastCommit": {"id": commit.sha, "title": commit.title, "date": commit.date}}


def _tree(hub: HubServer, repo: Repo, revision: str, folder: str, query: dict[str, list[str]]) -> Response:
    commit = hub.get_commit(repo, revision)
    entries = _entries(commit)
    folder = folder.strip("/")
    if folder and entries.get(folder, {}).get("type") != "directory":
        raise HubRequestError(404, f"{folder} does not exist on {revision}", "EntryNotFound",
                              {"X-Repo-Commit": commit.sha})

    recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
    expand = query.get("expand", ["false"])[0].lower() in ("1", "true")
    prefix = folder + "/" if folder else ""
    listed = []
    for path in sorted(entries):
        if not path.startswith(prefix) or path == folder:
            continue
        if not recursive and "/" in path[len(prefix):]:
            continue
        entry = entries[path]
        listed.append(_with_last_commit(entry, commit) if expand else entry)
    # Folders first, as the Hub lists them.
    listed.sort(key=lambda entry: (entry["type"] != "directory", entry["path"]))
    return Response.json(listed)


def _paths_info(hub: HubServer, repo: Repo, revision: str, body: bytes, headers: Message) -> Response:
    commit = hub.get_commit(repo, revision)
    if (headers.get("Content-Type") or "").startswith("application/json"):
        payload = json.loads(body or b"{}")
        paths, expand = payload.get("paths", []), bool(payload.get("expand"))
    else:
        form = parse_qs(body.decode("utf-8"))
        paths = form.get("paths", [])
        expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
    entries = _entries(commit)
    found = [entries[path.strip("/")] for path in paths if path.strip("/") in entries]
    return Response.json([_with_last_commit(entry, commit) if expand else entry for entry in found])


def _resolve(hub: HubServer, repo: Repo, revision: str, path: str, headers: Message) -> Response:
    commit = hub.get_commit(repo, revision)
    data = commit.files.get(path)
    if data is None:
        raise HubRequestError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})

    response_headers = {
        "X-Repo-Commit": commit.sha,
        "ETag": f'"{git_blob_sha(data)}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
    }
    range_header = headers.get("Range")
    if range_header:
        match = re.match(r"bytes=(\d*)-(\d*)$", range_header.strip())
        if match is None:
            raise HubRequestError(416, f"Invalid range {range_header!r}")
        if match[1]:
            start, stop = int(match[1]), int(match[2]) + 1 if match[2] else len(data)
        else:
            start, stop = max(len(data) - int(match[2]), 0), len(data)
        if start >= len(data) and len(data) > 0:
            raise HubRequestError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
        stop = min(stop, len(data))
        response_headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
        return Response(206, data[start:stop], response_headers)
    return Response(200, data, response_headers)


_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", None, ""}
non_loopback_requests: list[str] = []
_guard_installed = False


def install_loopback_guard(raise_error: bool = False) -> None:
    """Record every socket lookup or connection to a host other than loopback in ``non_loopback_requests``.

    With ``raise_error`` the connection fails with ``RuntimeError`` instead, so a subprocess that
    would reach the real Hub exits with an error. Audit hooks cannot be removed, so the guard stays
    for the rest of the process; calling this again changes nothing.
    """
    global _guard_installed
    if _guard_installed:
        return
    _guard_installed = True

    def hook(event: str, arguments: tuple) -> None:
        if event == "socket.getaddrinfo":
            host = arguments[0]
        elif event == "socket.connect" and isinstance(arguments[1], tuple):
            host = arguments[1][0]
        else:
            return
        if isinstance(host, bytes):
            host = host.decode()
        if host in _LOOPBACK_HOSTS or str(host).startswith("127."):
            return
        non_loopback_requests.append(f"{event} {host}")
        if raise_error:
            raise RuntimeError(f"Test process tried to reach {host}; tests may only use 127.0.0.1.")

    sys.addaudithook(hook)


def client_environment(url: str, hf_home: str | os.PathLike) -> dict[str, str]:
    """Return environment variables that point a fresh process's Hub clients at the server at ``url``.

    ``HF_HOME`` moves the Hub caches and saved token to a test folder. Download counting and the
    dataset viewer lookups of ``datasets`` are turned off, because they go to other hosts.
    """
    return {
        "HF_ENDPOINT": url,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    }


def use_server_in_process(monkeypatch: Any, url: str, hf_home: str | os.PathLike) -> None:
    """Point this process's already imported ``huggingface_hub`` at the server, as ``HF_ENDPOINT`` would.

    huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once at import, so the constants
    derived from them are patched too; requests still go through the unmodified client.
    """
    from huggingface_hub import constants

    hf_home = Path(hf_home)
    hf_home.mkdir(parents=True, exist_ok=True)
    for name, value in client_environment(url, hf_home).items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(hf_home / ".agent_harnesses.json"))


def _base_url(hub: HubServer) -> str:
    return hub.url


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


if __name__ == "__main__":
    with HubServer(tokens={"hf_test": "tester"}) as running:
        print(f"Test Hub server on {running.url} (token hf_test for user 'tester'); Ctrl-C stops it.")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
