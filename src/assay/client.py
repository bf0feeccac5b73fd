"""``assay.Client``: the SDK for an assay server (standard library only).

>>> c = assay.Client("http://127.0.0.1:8000", api_key=None)
>>> run = c.create_run("demo", "examples/toxicity/config.yaml")   # uploads the data files
>>> c.wait(run["id"]); c.register(run["id"], "toxicity")
>>> c.score("toxicity", ["you are great"])
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Sequence


from .errors import AssayError

FINAL = ("fine_tuned", "registered", "failed", "cancelled")


class ClientError(AssayError):
    """An error answer from the server (its JSON error fields, plus the HTTP status)."""

    def __init__(self, status: int, error: Mapping[str, Any]):
        super().__init__(error.get("expected", "a successful request"), error.get("found", f"HTTP {status}"),
                         error.get("fix", "see the server log"), code=error.get("code", f"http_{status}"))
        self.status = status
        self.error = dict(error)

    def to_dict(self) -> dict[str, Any]:
        return {**self.error, **super().to_dict()}


class Client:
    """Projects, datasets, runs, metrics and scoring over the REST API."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 120.0):
        self.url = (url or os.environ.get("ASSAY_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.api_key = api_key or os.environ.get("ASSAY_API_KEY")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # --- transport --------------------------------------------------------------------------
    def request(self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, Any] | None = None,
                data: bytes | None = None, content_type: str | None = None, raw: bool = False) -> Any:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Accept": "application/json"}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                err = json.loads(payload)["error"]
            except (ValueError, KeyError, TypeError):
                err = {"code": f"http_{exc.code}", "found": payload.decode(errors="replace")[:300] or exc.reason}
            raise ClientError(exc.code, err) from None
        except urllib.error.URLError as exc:
            raise AssayError(f"an assay server at {self.url}", f"no connection ({exc.reason})",
                             "start one with `assay serve` or pass the right --url / ASSAY_URL",
                             code="unreachable") from None
        if raw or "json" not in ctype:
            return body.decode("utf-8")
        return json.loads(body) if body else None

    @staticmethod
    def _multipart(fields: Mapping[str, Any], file_field: str, filename: str, content: bytes) -> tuple[bytes, str]:
        boundary = "assay" + secrets.token_hex(12)
        parts = []
        for k, v in fields.items():
            if v is None:
                continue
            if isinstance(v, (dict, list)):
                v = json.dumps(v)
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return b"".join(parts), f"multipart/form-data; boundary={boundary}"

    # --- server -----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self.request("GET", "/v1/health")

    def run_queue(self, run_id: str) -> dict[str, Any]:
        """Where a queued run waits: position (1: next), queue depth, live workers."""
        return self.request("GET", f"/v1/runs/{run_id}/queue")

    # --- projects ---------------------------------------------------------------------------
    def list_projects(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/projects")

    def create_project(self, name: str, description: str = "") -> dict[str, Any]:
        return self.request("POST", "/v1/projects", json_body={"name": name, "description": description})

    def get_project(self, project: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/projects/{_q(project)}")

    def ensure_project(self, name: str) -> dict[str, Any]:
        try:
            return self.get_project(name)
        except ClientError as exc:
            if exc.status != 404:
                raise
            return self.create_project(name)

    # --- datasets ---------------------------------------------------------------------------
    def upload_dataset(self, project: str, file: str | Path | bytes, *, metric: Any, kind: str = "test",
                       columns: Mapping[str, str] | None = None, label_map: Mapping[str, str] | None = None,
                       name: str | None = None, filename: str | None = None, seed_fraction: float | None = None,
                       validate_only: bool = False) -> dict[str, Any]:
        """Upload a CSV/JSONL/JSON/Parquet file (path or bytes + ``filename``)."""
        if isinstance(file, (str, Path)):
            path = Path(file)
            if not path.exists():
                raise AssayError("a data file", f"no file at {path}", "check the path", code="not_found")
            content, filename = path.read_bytes(), filename or path.name
        else:
            content = file
            if not filename:
                raise AssayError("a filename with the format's extension", "bytes without a filename",
                                 "pass filename='rows.jsonl'", code="invalid_input")
        if not isinstance(metric, str):
            metric = json.dumps(metric.to_dict() if hasattr(metric, "to_dict") else metric)
        fields = {"metric": metric, "kind": kind, "columns": dict(columns) if columns else None,
                  "label_map": dict(label_map) if label_map else None, "name": name,
                  "seed_fraction": seed_fraction, "validate_only": "true" if validate_only else None}
        body, ctype = self._multipart(fields, "file", filename, content)
        return self.request("POST", f"/v1/projects/{_q(project)}/datasets", data=body, content_type=ctype)

    def list_datasets(self, project: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/v1/projects/{_q(project)}/datasets")

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/datasets/{_q(dataset_id)}")

    # --- runs -------------------------------------------------------------------------------
    def create_run(self, project: str, config: str | Path | Mapping[str, Any], *, name: str | None = None,
                   create_project: bool = True) -> dict[str, Any]:
        """Queue a run from a config (YAML path, or mapping). Local data files in it are
        uploaded as datasets (with its columns/label_map) and referenced as ``dataset:<id>``."""
        if create_project:
            self.ensure_project(project)

        def upload(path: Path, kind: str, metric: Any, columns: Any, label_map: Any) -> str:
            return self.upload_dataset(project, path, metric=metric, kind=kind, columns=columns,
                                       label_map=label_map)["id"]

        cfg = prepare_config(config, upload)
        return self.request("POST", "/v1/runs", json_body={"project": project, "config": cfg, "name": name})

    def list_runs(self, project: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/runs", params={"project": project, "status": status})

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/runs/{_q(run_id)}")

    def run_logs(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self.request("GET", f"/v1/runs/{_q(run_id)}/logs", params={"after": after})

    def run_report(self, run_id: str, format: str = "json") -> Any:
        return self.request("GET", f"/v1/runs/{_q(run_id)}/report", params={"format": format})

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/runs/{_q(run_id)}/cancel")

    def wait(self, run_id: str, *, timeout: float = 3600.0, poll: float = 2.0) -> dict[str, Any]:
        """Poll until the run is Fine-tuned, Registered, Failed or Cancelled."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run["status"] in FINAL:
                return run
            if time.monotonic() > deadline:
                raise AssayError(f"run {run_id} to finish within {timeout:.0f}s", f"it is {run['status_title']}",
                                 "wait longer or check the worker (`assay worker`)", code="timeout")
            time.sleep(poll)

    # --- metrics ----------------------------------------------------------------------------
    def register(self, run_id: str, name: str | None = None, *, threshold: float | None = None, operator: str = ">=",
                 description: str | None = None, confirm: bool = False) -> dict[str, Any]:
        """Register a Fine-tuned run; ``confirm`` when its report shows it below a baseline. Without
        ``name``, a retrain from reviews becomes the next version of the metric it retrained."""
        return self.request("POST", f"/v1/runs/{_q(run_id)}/register", json_body={
            "name": name, "threshold": threshold, "operator": operator, "description": description,
            "confirm": confirm})

    def retrain(self, name: str) -> dict[str, Any]:
        """Queue a new run of registered metric ``name`` with the reviewed verdicts in the server's
        monitor store added to its training rows (``POST /v1/metrics/{name}/retrain``); returns the run."""
        return self.request("POST", f"/v1/metrics/{_q(name)}/retrain")

    def list_metrics(self, project: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/metrics", params={"project": project})

    def get_metric(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/metrics/{_q(name)}")

    def score(self, name: str, rows: Sequence[Mapping[str, Any] | str]) -> list[dict[str, Any]]:
        """Label, score, confidence and probabilities for each row (a string is a row's input)."""
        return self.request("POST", f"/v1/metrics/{_q(name)}/score", json_body={"rows": list(rows)})["results"]

    def guard(self, metrics: str | Sequence[str], row: Mapping[str, Any] | str,
              policy: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Check one row with one or more metrics and a policy: ``{"decision": "block" | "flag" | "allow",
        "verdicts": [...], "latency_ms"}`` (``POST /v1/guard``)."""
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        body: dict[str, Any] = {"metrics": names, "input": row}
        if policy is not None:
            body["policy"] = dict(policy)
        return self.request("POST", "/v1/guard", json_body=body)


def _q(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")


def prepare_config(config: str | Path | Mapping[str, Any], upload: Any) -> dict[str, Any]:
    """A run config ready for a server: metric files inlined, local data files uploaded with
    ``upload(path, kind, metric, columns, label_map) -> dataset id`` and written ``dataset:<id>``."""
    cfg, base = _read_config(config)
    metric = cfg.get("metric")
    if isinstance(metric, str) and metric.endswith((".yaml", ".yml", ".json")):
        from .metrics import load_metric

        p = Path(metric)
        cfg["metric"] = load_metric(p if p.is_absolute() or base is None else base / p).to_dict()
    data = cfg.get("data") or {}
    local = {k: data[k] for k in ("test_set", "train_set") if data.get(k) and not str(data[k]).startswith("dataset:")}
    for key, ref in local.items():
        p = Path(ref).expanduser()
        if not p.is_absolute() and base is not None:
            p = base / p
        data[key] = "dataset:" + upload(p, "test" if key == "test_set" else "train", cfg.get("metric"),
                                        data.get("columns") or None, data.get("label_map") or None)
    extras = data.get("extra_train_sets") or []
    for i, ref in enumerate(extras):  # canonical labeled rows: uploaded without columns/label_map
        if ref and not str(ref).startswith("dataset:"):
            p = Path(ref).expanduser()
            extras[i] = "dataset:" + upload(p if p.is_absolute() or base is None else base / p, "train",
                                            cfg.get("metric"), None, None)
    if local:
        data.pop("columns", None)
        data.pop("label_map", None)
    cfg.pop("output", None)
    return cfg


def _read_config(config: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], Path | None]:
    if hasattr(config, "to_dict") and not isinstance(config, Mapping):
        base = getattr(config, "base_dir", None)
        return copy.deepcopy(config.to_dict()), Path(base) if base else None  # type: ignore[union-attr]
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config)), None
    from ._files import read_yaml

    path = Path(config)
    data = read_yaml(path, "a run config YAML file")
    if not isinstance(data, dict):
        raise AssayError("a YAML mapping with metric and data", f"a {type(data).__name__}", f"fix {path.name}",
                         code="invalid_config")
    return data, path.parent.resolve()
