"""In-process Hugging Face transformers backend: the default, and the one that runs anywhere torch does.

Generation is batched greedy decoding with left padding. Label scoring runs one forward pass per batch
and reads the log-softmax at the last prompt position. When all prompts of a scoring call share a token
prefix (pointwise yes/no prompts repeat the same history for every candidate), that prefix is run once
and its KV cache is copied into each batch, so only the differing suffixes are computed; the result
equals the plain path up to float rounding. Structured outputs are enforced with xgrammar's token-mask
logits processor. Prompts arrive already chat-formatted and are tokenised without special tokens, so
token counts match `Backend.count_tokens` and the other backends.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from promptrec.adapters.card import check_adapter
from promptrec.backends.base import Backend, Generation, GenerationConfig, StructuredOutput
from promptrec.errors import BackendError

QUANTIZATIONS = ("8bit", "4bit")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Below this many shared tokens the prefix pass and cache copies cost more than they save.
MIN_SHARED_PREFIX_TOKENS = 16


class TransformersBackend(Backend):
    """Greedy, seeded generation and label scoring with a local transformers causal LM.

    Args:
        model: local Hugging Face folder, or a model id already in the local HF cache (never downloaded).
        device: "cpu" (default) or "cuda"/"cuda:N".
        dtype: "auto" (float32 on CPU, the checkpoint's dtype on GPU), "float32", "bfloat16" or "float16".
        quantization: None, "8bit" or "4bit" (NF4) through bitsandbytes.
        adapter: folder of a PEFT LoRA adapter to apply (merged into the weights unless quantised).
        batch_size: prompts per forward pass / generate call.
        max_context_tokens: prompt + new tokens limit; default the config's max_position_embeddings.
        seed: torch seed set once at load; each `generate` call also seeds with `GenerationConfig.seed`.
        reuse_prefix: run the prompts' common token prefix once when scoring (see the module docstring).
        timeout_s: deadline of one `generate` / `next_token_logprobs` call. Generation stops at it
            (transformers' `max_time`) and scoring checks it between batches; either way a call past its
            deadline raises BackendError instead of returning late.
    """

    name = "transformers"

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        quantization: str | None = None,
        adapter: str | Path | None = None,
        batch_size: int = 8,
        max_context_tokens: int | None = None,
        seed: int = 0,
        reuse_prefix: bool = True,
        timeout_s: float | None = None,
    ) -> None:
        if timeout_s is not None and not timeout_s > 0:
            raise BackendError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        if batch_size < 1:
            raise BackendError(f"batch_size must be >= 1, got {batch_size}")
        if quantization is not None and quantization not in QUANTIZATIONS:
            raise BackendError(
                f"quantization {quantization!r} is not supported; use one of {QUANTIZATIONS} or None"
            )
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(
                f"device {device!r} was asked for but torch sees no CUDA GPU; use device='cpu'"
            )
        if device == "cpu":
            torch.set_num_threads(_available_cores())
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.reuse_prefix = reuse_prefix
        self.timeout_s = timeout_s
        self._grammar_compiler: Any = None

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        tokenizer = _load_tokenizer(model)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = _load_model(model, self.device, _resolve_dtype(dtype, self.device), quantization)
        if adapter is not None:
            adapter_dir = Path(adapter).expanduser()
            check_adapter(adapter_dir, model)
            self.model = _apply_adapter(self.model, adapter_dir, merge=quantization is None)
        self.model.eval()
        self.stop_token_ids = _stop_token_ids(self.model, tokenizer)
        context = max_context_tokens or getattr(self.model.config, "max_position_embeddings", None)
        if not context:
            raise BackendError(
                f"model {str(model)!r} declares no max_position_embeddings; pass max_context_tokens"
            )
        super().__init__(tokenizer, int(context))

    # --- Backend --------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], config: GenerationConfig) -> list[Generation]:
        deadline = self._deadline()
        encoded = self._encode(prompts, config.max_new_tokens)
        grammar = None if config.structured is None else self._compile(config.structured)
        generations: list[Generation] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            input_ids, attention_mask = self._left_pad(chunk)
            extra: dict[str, Any] = {}
            if deadline is not None:  # generation itself stops at the deadline
                extra["max_time"] = max(deadline - time.monotonic(), 1e-3)
            if grammar is not None:
                from xgrammar.contrib.hf import (
                    LogitsProcessor,
                )  # one per generate call: it keeps matcher state

                extra["logits_processor"] = [LogitsProcessor(grammar)]
            torch.manual_seed(config.seed)
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    max_new_tokens=config.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=sorted(self.stop_token_ids),
                    **extra,
                )
            self._check_deadline(deadline, start, len(encoded))
            new_tokens = output[:, input_ids.shape[1] :].tolist()
            generations.extend(
                self._to_generation(ids, tokens) for ids, tokens in zip(chunk, new_tokens, strict=True)
            )
        return generations

    def next_token_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        deadline = self._deadline()
        label_ids = torch.tensor(self.label_token_ids(labels), device=self.device)
        encoded = self._encode(prompts, 1)
        shared = _shared_prefix_length(encoded) if self.reuse_prefix and len(encoded) > 1 else 0
        prefix_cache = self._prefill(encoded[0][:shared]) if shared >= MIN_SHARED_PREFIX_TOKENS else None
        if prefix_cache is None:
            shared = 0
        scores: list[list[float]] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = [ids[shared:] for ids in encoded[start : start + self.batch_size]]
            logits = self._last_position_logits(chunk, shared, prefix_cache)
            self._check_deadline(deadline, start, len(encoded))
            scores.extend(torch.log_softmax(logits.float(), dim=-1)[:, label_ids].tolist())
        return scores

    def close(self) -> None:
        self.model = None
        self._grammar_compiler = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # --- internals ------------------------------------------------------------------------------------
    def _deadline(self) -> float | None:
        return None if self.timeout_s is None else time.monotonic() + self.timeout_s

    def _check_deadline(self, deadline: float | None, done: int, total: int) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise BackendError(
                f"the transformers backend passed its deadline of {self.timeout_s:g} s with {done} of "
                f"{total} prompts answered; raise timeout_s (--timeout) or send fewer prompts"
            )

    def _encode(self, prompts: Sequence[str], new_tokens: int) -> list[list[int]]:
        if self.model is None:
            raise BackendError("this backend was closed; load a new one")
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        for index, ids in enumerate(encoded):
            if not ids:
                raise BackendError(f"prompt {index} is empty; the model needs at least one prompt token")
            if len(ids) + new_tokens > self.max_context_tokens:
                raise BackendError(
                    f"prompt {index} has {len(ids)} tokens and needs {new_tokens} more, beyond the model's "
                    f"context of {self.max_context_tokens} tokens: shorten the history or the candidate list"
                )
        return encoded

    def _left_pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + list(ids) for ids in sequences])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in sequences])
        return input_ids.to(self.device), mask.to(self.device)

    def _prefill(self, prefix: Sequence[int]) -> Any:
        with torch.inference_mode():
            ids = torch.tensor([list(prefix)], device=self.device)
            output = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return output.past_key_values

    def _last_position_logits(
        self, suffixes: Sequence[Sequence[int]], offset: int, prefix_cache: Any
    ) -> torch.Tensor:
        """Logits after each sequence's last token; `offset` tokens of `prefix_cache` precede every suffix."""
        input_ids, mask = self._left_pad(suffixes)
        # Left padding shifts the real tokens right; explicit positions keep them where they'd be unpadded.
        position_ids = (mask.cumsum(dim=-1) - 1).clamp(min=0) + offset
        inputs: dict[str, Any] = {"input_ids": input_ids, "position_ids": position_ids, "logits_to_keep": 1}
        if prefix_cache is None:
            inputs.update(attention_mask=mask, use_cache=False)
        else:
            cache = copy.deepcopy(
                prefix_cache
            )  # the forward pass appends to it; the original serves later batches
            cache.batch_repeat_interleave(len(suffixes))
            prefix_mask = torch.ones(len(suffixes), offset, dtype=mask.dtype, device=self.device)
            inputs.update(
                attention_mask=torch.cat([prefix_mask, mask], dim=1), past_key_values=cache, use_cache=True
            )
        with torch.inference_mode():
            return self.model(**inputs).logits[:, -1, :]

    def _to_generation(self, prompt_ids: Sequence[int], new_tokens: list[int]) -> Generation:
        # Finished rows are padded with pad (often == eos) tokens: stop counting at the first stop token.
        stop = next((i for i, token in enumerate(new_tokens) if token in self.stop_token_ids), None)
        answer = new_tokens if stop is None else new_tokens[:stop]
        return Generation(
            text=self.tokenizer.decode(answer, skip_special_tokens=True),
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(new_tokens) if stop is None else stop + 1,
        )

    def _compile(self, structured: StructuredOutput) -> Any:
        fields = (("json_schema", structured.json_schema), ("regex", structured.regex))
        chosen = {name: value for name, value in fields if value is not None}
        if len(chosen) != 1:
            raise BackendError(
                f"GenerationConfig.structured must set one of json_schema or regex, got {sorted(chosen)}"
            )
        try:
            import xgrammar
        except ImportError as exc:
            raise BackendError("structured outputs need xgrammar: `pip install xgrammar`") from exc
        if self._grammar_compiler is None:
            info = xgrammar.TokenizerInfo.from_huggingface(
                self.tokenizer,
                vocab_size=self.model.config.vocab_size,
                stop_token_ids=sorted(self.stop_token_ids),
            )
            self._grammar_compiler = xgrammar.GrammarCompiler(
                info, max_threads=max(1, torch.get_num_threads())
            )
        try:
            if structured.json_schema is not None:
                # Compact JSON: small models otherwise wander through optional whitespace to the token limit.
                return self._grammar_compiler.compile_json_schema(
                    json.dumps(structured.json_schema), any_whitespace=False
                )
            return self._grammar_compiler.compile_regex(structured.regex)
        except (RuntimeError, ValueError) as exc:
            field = next(iter(chosen))
            raise BackendError(f"structured.{field} could not be compiled into a grammar: {exc}") from exc


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # honours taskset/cgroup CPU pinning; absent on macOS
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Longest common token prefix, leaving at least one token of every sequence to run."""
    shortest = min(len(ids) for ids in sequences)
    first = sequences[0]
    length = 0
    while length < shortest - 1 and all(ids[length] == first[length] for ids in sequences):
        length += 1
    return length


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype | str:
    if dtype == "auto":
        # Half precision matmuls are slow or missing on many CPUs; on GPU keep what the checkpoint stores.
        return torch.float32 if device.type == "cpu" else "auto"
    if dtype not in DTYPES:
        raise BackendError(f"dtype {dtype!r} is not supported; use 'auto' or one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def _load_tokenizer(model: str | Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise BackendError(_not_local_message(model, exc)) from exc


def _load_model(
    model: str | Path, device: torch.device, dtype: torch.dtype | str, quantization: str | None
) -> Any:
    from transformers import AutoModelForCausalLM

    options: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if quantization is not None:
        options["quantization_config"] = _bitsandbytes_config(quantization, device)
        options["device_map"] = {"": str(device)}
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(model), **options)
    except (OSError, ValueError) as exc:
        raise BackendError(_not_local_message(model, exc)) from exc
    return loaded if quantization is not None else loaded.to(device)


def _bitsandbytes_config(quantization: str, device: torch.device) -> Any:
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise BackendError(f"quantization={quantization!r} needs bitsandbytes: `pip install bitsandbytes`")
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.float32 if device.type == "cpu" else torch.bfloat16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )


def _apply_adapter(model: Any, adapter: Path, merge: bool) -> Any:
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise BackendError(
            "LoRA adapters need peft: `pip install 'promptrec[train]'` or `pip install peft`"
        ) from exc
    try:
        wrapped = PeftModel.from_pretrained(model, str(adapter))
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackendError(f"adapter {str(adapter)!r} does not fit this model: {exc}") from exc
    # Merged LoRA weights cost nothing per token; quantised base weights cannot absorb them.
    return wrapped.merge_and_unload() if merge else wrapped


def _stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    ids.discard(None)
    if not ids:
        raise BackendError("the model declares no end-of-sequence token; its tokenizer needs an eos_token")
    return ids


def _not_local_message(model: str | Path, exc: Exception) -> str:
    return (
        f"could not load model {str(model)!r} from local files ({type(exc).__name__}: {exc}); "
        "promptrec never downloads at run time: pass a local Hugging Face folder, fetch it first "
        "(`huggingface-cli download <repo> --local-dir <folder>`), or omit --model for the bundled model"
    )
