"""A loopback Hugging Face Hub for tests: stdlib ``http.server``, classic LFS path, no Xet.

It implements the endpoints that ``huggingface_hub`` (2.x), ``transformers``, ``peft``, ``datasets``
and ``evaluate`` use to create repos, upload folders and download files (DESIGN.md §3):

* ``POST /api/repos/create``, ``DELETE /api/repos/delete``, ``POST /api/validate-yaml``,
  ``GET /api/whoami-v2``;
* ``GET /api/{models,datasets,spaces}/{id}[/revision/{rev}]`` (repo info with ``sha`` and ``siblings``);
* ``POST /api/{t}/{id}/preupload/{rev}`` (upload mode ``regular`` or ``lfs`` and the remote oid);
* ``POST /[{datasets,spaces}/]{id}.git/info/lfs/objects/batch`` plus ``PUT`` of the returned
  upload href and ``POST`` of the verify href;
* ``POST /api/{t}/{id}/commit/{rev}`` (NDJSON operations);
* ``GET /api/{t}/{id}/tree/{rev}[/{path}]``, ``POST /api/{t}/{id}/paths-info/{rev}``,
  ``GET /api/{t}/{id}/commits/{rev}``, ``GET /api/{t}/{id}/refs``;
* ``HEAD``/``GET /[datasets/|spaces/]{id}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag``,
  ``X-Linked-Etag``/``X-Linked-Size`` for LFS files, and ``Range`` support.

404s carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) so that the client
raises the right exception. Commit ids are real git-style SHA-1s of a commit object (tree, parent,
author, message); file oids are git blob SHA-1s (of the LFS pointer for LFS files).

Repos live under a temporary folder (``HubServer.root``): file contents are stored once by SHA-256 in
``objects/`` and each repo's history in ``repos/<type>/<namespace>/<name>.json``, so a stopped server can
be started again on the same port with its data (used to test recovery after an outage).

Fault injection: ``fail_commits(n)`` makes the next ``n`` commit requests answer HTTP 500 without
changing anything; ``stop()`` closes the socket, so clients get "connection refused".

Usage::

    with HubServer(token="hf_dummy") as hub:   # starts on 127.0.0.1 with an ephemeral port
        ... HF_ENDPOINT=hub.url ...

    python tests/hub_server.py --port 8765     # run stand-alone (Ctrl-C to stop)
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer"]

REPO_TYPES = ("model", "dataset", "space")
#: Files uploaded through LFS, as in the Hub's default ``.gitattributes`` (plus anything over 10 MB).
LFS_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.gguf",
    "*.parquet", "*.arrow", "*.npy", "*.npz", "*.zip", "*.gz", "*.tar", "*.pkl", "*.model",
)
LFS_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
USER = "tester"
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    """Git object id of a blob holding ``data`` (SHA-1 of ``b"blob <len>\\0" + data``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file stored in git in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Store:
    """Repos, commits and objects on disk; every method holds the lock."""

    def __init__(self, root: Path):
        self.root = root
        (root / "objects").mkdir(parents=True, exist_ok=True)
        (root / "repos").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()

    # -- objects ---------------------------------------------------------------------------------
    def put_object(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / "objects" / sha
        if not path.exists():
            tmp = path.with_suffix(".tmp%d" % threading.get_ident())
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha

    def has_object(self, sha: str) -> bool:
        return (self.root / "objects" / sha).is_file()

    def get_object(self, sha: str) -> bytes:
        return (self.root / "objects" / sha).read_bytes()

    # -- repos -----------------------------------------------------------------------------------
    def _repo_path(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type / f"{repo_id}.json"

    def load(self, repo_type: str, repo_id: str) -> dict:
        path = self._repo_path(repo_type, repo_id)
        if not path.is_file():
            raise _HubError(404, f"Repository Not Found: {repo_type} {repo_id}", "RepoNotFound")
        return json.loads(path.read_text())

    def save(self, repo: dict) -> None:
        path = self._repo_path(repo["type"], repo["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo, indent=1))
        tmp.replace(path)

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return self._repo_path(repo_type, repo_id).is_file()

    def resolve(self, repo: dict, revision: str) -> str:
        """Commit oid of a branch name or a (full or 7+ char) commit id."""
        revision = unquote(revision)
        if revision in repo["refs"]:
            return repo["refs"][revision]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            hits = [oid for oid in repo["commits"] if oid.startswith(revision)]
            if len(hits) == 1:
                return hits[0]
        raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def new_commit(self, repo: dict, branch: str, files: dict, summary: str, description: str = "") -> str:
        """Record a commit on ``branch`` with the full file table ``files``; returns its oid."""
        parent = repo["refs"].get(branch)
        entries = b"".join(
            b"100644 " + path.encode() + b"\0" + bytes.fromhex(info["blob"]) for path, info in sorted(files.items())
        )
        tree = hashlib.sha1(b"tree %d\0" % len(entries) + entries).hexdigest()
        stamp = int(time.time())
        message = summary + ("\n\n" + description if description else "")
        body = f"tree {tree}\n"
        if parent:
            body += f"parent {parent}\n"
        body += f"author {USER} <{USER}@example.com> {stamp} +0000\n"
        body += f"committer {USER} <{USER}@example.com> {stamp} +0000\n\n{message}\n"
        raw = body.encode()
        oid = hashlib.sha1(b"commit %d\0" % len(raw) + raw).hexdigest()
        repo["commits"][oid] = {
            "parent": parent, "tree": tree, "summary": summary, "description": description,
            "date": _now(), "files": files,
        }
        repo["refs"][branch] = oid
        repo["lastModified"] = repo["commits"][oid]["date"]
        return oid

    def add_file(self, files: dict, path: str, data: bytes, lfs: bool) -> None:
        sha = self.put_object(data)
        blob = git_blob_oid(lfs_pointer(sha, len(data)) if lfs else data)
        files[path] = {"size": len(data), "sha256": sha, "blob": blob, "lfs": lfs}


def _is_lfs(path: str, size: int) -> bool:
    name = path.rsplit("/", 1)[-1]
    return size > LFS_SIZE or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


class _Handler(BaseHTTPRequestHandler):
    server_version = "LoopbackHub/1.0"
    hub: "HubServer"  # set on the subclass made per server

    # quiet logs; the server keeps its own request log
    def log_message(self, fmt, *args):  # noqa: D401
        pass

    # -- plumbing ----------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: _HubError):
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json({"error": err.message}, err.status, headers)

    def _require_auth(self):
        expected = self.hub.token
        auth = self.headers.get("Authorization", "")
        if expected is not None and auth != f"Bearer {expected}":
            raise _HubError(401, "Invalid credentials in Authorization header", None)

    def _dispatch(self):
        parts = urlsplit(self.path)
        segs = [s for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        self.hub._log(self.command, parts.path)
        try:
            handled = self._route(segs, query)
            if handled is False:
                self.hub.unhandled.append((self.command, self.path))
                raise _HubError(404, f"no route for {self.command} {parts.path}", None)
        except _HubError as err:
            self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _dispatch

    # -- routing -----------------------------------------------------------------------------------
    def _route(self, segs: list[str], query: dict):
        store, cmd = self.hub.store, self.command
        if segs[:2] == ["api", "whoami-v2"]:
            self._require_auth()
            return self._json({"type": "user", "name": USER, "fullname": "Test User", "orgs": [],
                               "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if segs[:2] == ["api", "agent-harnesses"]:  # huggingface_hub's agent detection registry
            return self._json({"standardEnvVars": [], "harnesses": {}})
        if segs[:3] == ["api", "repos", "create"] and cmd == "POST":
            return self._create_repo()
        if segs[:3] == ["api", "repos", "delete"] and cmd == "DELETE":
            return self._delete_repo()
        if segs[:2] == ["api", "validate-yaml"] and cmd == "POST":
            self._body()
            return self._json({"errors": [], "warnings": []})
        if segs[:1] == ["_lfs"] and len(segs) >= 2:
            return self._lfs_transfer(segs[1], verify=len(segs) > 2 and segs[2] == "verify")
        if len(segs) >= 4 and segs[0] == "api" and segs[1] in ("models", "datasets", "spaces"):
            repo_type = segs[1][:-1]
            repo_id = f"{unquote(segs[2])}/{unquote(segs[3])}"
            rest = segs[4:]
            with store.lock:
                repo = store.load(repo_type, repo_id)
            if not rest:
                return self._repo_info(repo, "main")
            action, args = rest[0], rest[1:]
            if action == "revision" and args:
                return self._repo_info(repo, "/".join(args))
            if action == "preupload" and cmd == "POST":
                return self._preupload(repo, "/".join(args) or "main")
            if action == "commit" and cmd == "POST":
                return self._commit(repo, "/".join(args) or "main")
            if action == "tree" and args:
                return self._tree(repo, args[0], "/".join(unquote(a) for a in args[1:]), query)
            if action == "paths-info" and args and cmd == "POST":
                return self._paths_info(repo, args[0])
            if action == "commits" and args:
                return self._commits(repo, args[0])
            if action == "refs":
                return self._json({"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": o}
                                                for b, o in repo["refs"].items()], "converts": [], "tags": []})
            return False
        # /[datasets|spaces/]ns/name.git/info/lfs/objects/batch and .../resolve/rev/path
        repo_type = "model"
        if segs and segs[0] in ("datasets", "spaces"):
            repo_type, segs = segs[0][:-1], segs[1:]
        if len(segs) >= 3 and segs[1].endswith(".git") and segs[2:] == ["info", "lfs", "objects", "batch"]:
            repo_id = f"{unquote(segs[0])}/{unquote(segs[1][:-4])}"
            with store.lock:
                store.load(repo_type, repo_id)
            return self._lfs_batch()
        if len(segs) >= 5 and segs[2] == "resolve" and cmd in ("GET", "HEAD"):
            repo_id = f"{unquote(segs[0])}/{unquote(segs[1])}"
            with store.lock:
                repo = store.load(repo_type, repo_id)
            return self._resolve(repo, segs[3], "/".join(unquote(s) for s in segs[4:]))
        return False

    # -- repos -------------------------------------------------------------------------------------
    def _create_repo(self):
        self._require_auth()
        payload = json.loads(self._body() or b"{}")
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise _HubError(400, f"invalid repo type {repo_type}")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.hub.url}/{prefix}{repo_id}"
        store = self.hub.store
        with store.lock:
            if store.exists(repo_type, repo_id):
                return self._json({"error": "You already created this repo", "url": url}, 409)
            if repo_type == "space" and not payload.get("sdk"):
                raise _HubError(400, "a Space needs an sdk")
            repo = {"type": repo_type, "id": repo_id, "sdk": payload.get("sdk"), "createdAt": _now(),
                    "private": payload.get("visibility") == "private", "refs": {}, "commits": {}}
            files: dict = {}
            store.add_file(files, ".gitattributes", GITATTRIBUTES, lfs=False)
            store.new_commit(repo, "main", files, "initial commit")
            store.save(repo)
        return self._json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self):
        self._require_auth()
        payload = json.loads(self._body() or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        store = self.hub.store
        with store.lock:
            store.load(repo_type, repo_id)
            store._repo_path(repo_type, repo_id).unlink()
        return self._json({})

    def _repo_info(self, repo: dict, revision: str):
        store = self.hub.store
        with store.lock:
            oid = store.resolve(repo, revision)
            files = repo["commits"][oid]["files"]
        info = {
            "_id": hashlib.md5(repo["id"].encode()).hexdigest()[:24], "id": repo["id"],
            "author": repo["id"].split("/")[0], "sha": oid, "lastModified": repo["commits"][oid]["date"],
            "createdAt": repo["createdAt"], "private": repo["private"], "disabled": False, "gated": False,
            "downloads": 0, "likes": 0, "tags": [],
            "siblings": [{"rfilename": p, "size": f["size"], "blobId": f["blob"],
                          **({"lfs": {"sha256": f["sha256"], "size": f["size"],
                                      "pointerSize": len(lfs_pointer(f["sha256"], f["size"]))}} if f["lfs"] else {})}
                         for p, f in sorted(files.items())],
        }
        if repo["type"] == "model":
            info["modelId"] = repo["id"]
        if repo["type"] == "space":
            info["sdk"] = repo["sdk"]
            info["runtime"] = {"stage": "RUNNING", "hardware": {"current": "cpu-basic", "requested": "cpu-basic"}}
        return self._json(info)

    # -- upload ------------------------------------------------------------------------------------
    def _preupload(self, repo: dict, revision: str):
        self._require_auth()
        payload = json.loads(self._body() or b"{}")
        store = self.hub.store
        with store.lock:
            try:
                files = repo["commits"][store.resolve(repo, revision)]["files"]
            except _HubError:
                files = {}  # a new branch
        out = []
        for item in payload.get("files", []):
            lfs = _is_lfs(item["path"], int(item["size"]))
            remote = files.get(item["path"])
            oid = None
            if remote is not None:
                oid = remote["sha256"] if remote["lfs"] else remote["blob"]
            out.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False, "oid": oid})
        return self._json({"files": out, "commitOid": repo["refs"].get("main")})

    def _lfs_batch(self):
        self._require_auth()
        payload = json.loads(self._body() or b"{}")
        store = self.hub.store
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not store.has_object(obj["oid"]):
                href = f"{self.hub.url}/_lfs/{obj['oid']}"
                entry["actions"] = {"upload": {"href": href, "header": {}},
                                    "verify": {"href": f"{href}/verify", "header": {}}}
            objects.append(entry)
        return self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                          headers={"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_transfer(self, sha: str, verify: bool):
        store = self.hub.store
        if verify and self.command == "POST":
            self._body()
            if not store.has_object(sha):
                raise _HubError(404, f"LFS object {sha} not uploaded")
            return self._json({"success": True})
        if self.command == "PUT":
            data = self._body()
            if hashlib.sha256(data).hexdigest() != sha:
                raise _HubError(400, "LFS object content does not match its sha256")
            store.put_object(data)
            return self._send(200)
        return False

    def _commit(self, repo: dict, revision: str):
        self._require_auth()
        raw = self._body()
        hub, store = self.hub, self.hub.store
        with store.lock:
            if hub._fail_commits > 0:
                hub._fail_commits -= 1
                raise _HubError(500, "Internal Error - We're working hard to fix this as soon as possible!")
            repo = store.load(repo["type"], repo["id"])  # fresh copy under the lock
            branch = unquote(revision)
            parent = repo["refs"].get(branch)
            if parent is None and _HEX40.match(branch):
                raise _HubError(400, "cannot commit to a commit id", "RevisionNotFound")
            files = dict(repo["commits"][parent]["files"]) if parent else {}
            header = {}
            for line in raw.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    header = value
                    if value.get("parentCommit") and value["parentCommit"] != parent:
                        raise _HubError(412, "A commit has happened since. Please refresh and try again.")
                elif key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                        else value["content"].encode()
                    store.add_file(files, value["path"], data, lfs=False)
                elif key == "lfsFile":
                    if not store.has_object(value["oid"]):
                        raise _HubError(400, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                    size = len(store.get_object(value["oid"]))
                    files[value["path"]] = {"size": size, "sha256": value["oid"], "lfs": True,
                                            "blob": git_blob_oid(lfs_pointer(value["oid"], size))}
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise _HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for path in [p for p in files if p.startswith(prefix)]:
                        del files[path]
                else:
                    raise _HubError(400, f"unknown commit operation {key}")
            oid = store.new_commit(repo, branch, files, header.get("summary", ""), header.get("description", ""))
            store.save(repo)
        prefix = "" if repo["type"] == "model" else f"{repo['type']}s/"
        return self._json({"success": True, "commitOid": oid, "commitUrl": f"{hub.url}/{prefix}{repo['id']}/commit/{oid}",
                           "hookOutput": "", "pullRequestUrl": None})

    # -- listing -----------------------------------------------------------------------------------
    def _entry(self, repo: dict, oid: str, path: str, files: dict) -> dict:
        commit = repo["commits"][oid]
        last = {"id": oid, "title": commit["summary"], "date": commit["date"]}
        if path in files:
            f = files[path]
            entry = {"type": "file", "oid": f["blob"], "size": f["size"], "path": path, "lastCommit": last}
            if f["lfs"]:
                entry["lfs"] = {"oid": f["sha256"], "size": f["size"],
                                "pointerSize": len(lfs_pointer(f["sha256"], f["size"]))}
            return entry
        tree = hashlib.sha1(("tree " + path + oid).encode()).hexdigest()
        return {"type": "directory", "oid": tree, "size": 0, "path": path, "lastCommit": last}

    def _tree(self, repo: dict, revision: str, path: str, query: dict):
        store = self.hub.store
        with store.lock:
            oid = store.resolve(repo, revision)
            files = repo["commits"][oid]["files"]
        path = path.strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = path + "/" if path else ""
        if path and path in files:
            return self._json([self._entry(repo, oid, path, files)])
        names: set[str] = set()
        for p in files:
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            for depth in range(1, len(parts) + 1 if recursive else 2):
                names.add(prefix + "/".join(parts[:depth]))
        if path and not names:
            raise _HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        return self._json([self._entry(repo, oid, n, files) for n in sorted(names)])

    def _paths_info(self, repo: dict, revision: str):
        body = self._body()
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        store = self.hub.store
        with store.lock:
            oid = store.resolve(repo, revision)
            files = repo["commits"][oid]["files"]
        out = []
        for path in paths if isinstance(paths, list) else [paths]:
            path = path.strip("/")
            if path in files or any(p.startswith(path + "/") for p in files):
                out.append(self._entry(repo, oid, path, files))
        return self._json(out)

    def _commits(self, repo: dict, revision: str):
        store = self.hub.store
        with store.lock:
            oid = store.resolve(repo, revision)
        out = []
        while oid:
            commit = repo["commits"][oid]
            out.append({"id": oid, "title": commit["summary"], "message": commit["description"],
                        "date": commit["date"], "authors": [{"user": USER}]})
            oid = commit["parent"]
        return self._json(out)

    # -- download ----------------------------------------------------------------------------------
    def _resolve(self, repo: dict, revision: str, path: str):
        store = self.hub.store
        with store.lock:
            oid = store.resolve(repo, revision)
            info = repo["commits"][oid]["files"].get(path)
        if info is None:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = store.get_object(info["sha256"])
        headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes"}
        if info["lfs"]:
            headers.update({"ETag": f'"{info["sha256"]}"', "X-Linked-Etag": f'"{info["sha256"]}"',
                            "X-Linked-Size": str(info["size"])})
        else:
            headers["ETag"] = f'"{info["blob"]}"'
        status = 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "") or "")
        if match and data:
            start = int(match.group(1)) if match.group(1) else max(0, len(data) - int(match.group(2) or 0))
            end = int(match.group(2)) if match.group(1) and match.group(2) else len(data) - 1
            end = min(end, len(data) - 1)
            if start > end:
                raise _HubError(416, "Range Not Satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self.hub.downloads.append((repo["type"], repo["id"], path))
        return self._send(status, data, headers, ctype="application/octet-stream")


class HubServer:
    """A loopback Hub on ``127.0.0.1`` (ephemeral port unless ``port`` is given).

    Args:
        root: folder holding the repos (default: a new temporary folder, removed by :meth:`close`).
        token: if set, write requests must carry ``Authorization: Bearer <token>``.
        port: TCP port (0: pick a free one; the port is kept across :meth:`stop`/:meth:`start`).
    """

    def __init__(self, root: str | Path | None = None, token: str | None = None, port: int = 0):
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="loopback-hub-")) if root is None else Path(root)
        self.store = _Store(self.root)
        self.token = token
        self.port = port
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.downloads: list[tuple[str, str, str]] = []
        self._fail_commits = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, to use as ``HF_ENDPOINT``."""
        return f"http://127.0.0.1:{self.port}"

    def _log(self, method: str, path: str) -> None:
        self.requests.append((method, path))

    def start(self) -> "HubServer":
        """Start serving in a daemon thread (again on the same port after :meth:`stop`)."""
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"hub": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket: clients now get "connection refused". Data is kept."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def close(self) -> None:
        """Stop and delete the temporary data folder (when the server made it)."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- fault injection and inspection ------------------------------------------------------------
    def fail_commits(self, n: int = 1) -> None:
        """Answer the next ``n`` commit requests with HTTP 500 (nothing is committed)."""
        self._fail_commits = n

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[dict]:
        """History of a branch, newest first: dicts with ``id``, ``parent``, ``summary``, ``files``."""
        with self.store.lock:
            repo = self.store.load(repo_type, repo_id)
            oid = self.store.resolve(repo, revision)
            out = []
            while oid:
                out.append({"id": oid, **repo["commits"][oid]})
                oid = repo["commits"][oid]["parent"]
        return out

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """``{path: content}`` of a revision."""
        with self.store.lock:
            repo = self.store.load(repo_type, repo_id)
            files = repo["commits"][self.store.resolve(repo, revision)]["files"]
            return {p: self.store.get_object(f["sha256"]) for p, f in files.items()}

    def is_lfs(self, repo_id: str, path: str, repo_type: str = "model") -> bool:
        """Whether ``path`` on ``main`` was stored through LFS."""
        with self.store.lock:
            repo = self.store.load(repo_type, repo_id)
            return repo["commits"][repo["refs"]["main"]]["files"][path]["lfs"]


def main() -> None:  # pragma: no cover - manual use
    """Run a loopback Hub in the foreground: ``python tests/hub_server.py [--port N] [--root DIR]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--root", default=None)
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    hub = HubServer(root=args.root, token=args.token, port=args.port).start()
    print(f"HF_ENDPOINT={hub.url}  (data in {hub.root}); Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.close()


if __name__ == "__main__":  # pragma: no cover
    main()
