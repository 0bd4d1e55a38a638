"""A catalogue's search index: item embeddings (all-MiniLM-L6-v2) and BM25, cached on disk.

The index is built once and stored under `<cache root>/catalog-index/<content hash>/`, where the hash
covers every item's id, title, text and attributes (not the file's bytes, so the same items in another
format share an index) plus the embedder and the index format. A changed catalogue hashes differently,
so its stale index is never read; older indexes built from the same file are removed when the new one is
written. Writes go to a temporary folder renamed into place, so a crash never leaves half an index.

Everything here is content-only: an item nobody has interacted with is as findable as any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptrec.bundled import cache_root
from promptrec.data.catalog import Catalog
from promptrec.data.catalog_file import CatalogSource, load_catalog_source
from promptrec.facets import GENRE_ATTRIBUTES, FacetVocabulary, ItemFacets, item_facets, item_genres
from promptrec.models import Interaction, Item, UserContext
from promptrec.retrievers import Retriever, make_retriever
from promptrec.retrievers.bm25 import bm25_query_scores, build_bm25_index, load_bm25s
from promptrec.retrievers.embedding import EmbeddingRetriever

# Bump when what is stored (or how item text is written) changes, so old caches are rebuilt.
INDEX_FORMAT = 1
EMBEDDER_NAME = "all-MiniLM-L6-v2"


def search_text(item: Item) -> str:
    """What search reads about an item: its title, text, genres and other attributes, as one line."""
    genres = item_genres(item)
    parts = [item.title, item.text or ""]
    if genres:
        parts.append("Genres: " + ", ".join(genres))
    parts.extend(f"{key}: {value}" for key, value in item.attributes.items() if key not in GENRE_ATTRIBUTES)
    return ". ".join(part for part in parts if part)


def content_hash(catalog: Catalog) -> str:
    digest = hashlib.sha256(f"format={INDEX_FORMAT};embedder={EMBEDDER_NAME}\n".encode())
    for item in catalog:
        digest.update(json.dumps(item.model_dump(mode="json"), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class CatalogIndex:
    """Search over one catalogue. `ids[i]`, `embeddings[i]` and BM25 document i are the same item."""

    source: CatalogSource
    content_hash: str
    embeddings: np.ndarray  # (items, dims), unit length
    bm25: Any
    embedder: EmbeddingRetriever
    cache_status: str  # "hit" (read from disk) or "built"
    load_s: float

    def __post_init__(self) -> None:
        self.items: list[Item] = list(self.source.catalog)
        self.ids = [item.id for item in self.items]
        self.position = {item_id: index for index, item_id in enumerate(self.ids)}
        self.facets: list[ItemFacets] = [item_facets(item) for item in self.items]
        self.vocabulary = FacetVocabulary.of(self.facets)
        self._retrievers: dict[str, Retriever] = {}
        self._fit_lock = threading.Lock()

    @property
    def catalog(self) -> Catalog:
        return self.source.catalog

    def bm25_scores(self, query: str) -> np.ndarray:
        scores = bm25_query_scores(self.bm25, query)
        return np.zeros(len(self.ids)) if scores is None else scores

    def text_embedding_scores(self, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of every item to the mean embedding of `texts` (a request, preferences)."""
        return self._similarity(self.embedder.encode(list(texts)))

    def item_embedding_scores(self, item_ids: Sequence[str]) -> np.ndarray:
        """Cosine similarity of every item to the mean embedding of the given catalogue items."""
        return self._similarity(self.embeddings[[self.position[item_id] for item_id in item_ids]])

    def popularity_scores(self) -> np.ndarray:
        """Interaction counts from the source's histories (all zero when it has none)."""
        return np.asarray(self._fitted("popularity").score(UserContext(), self.items))

    def itemknn_scores(self, history: Sequence[str]) -> np.ndarray:
        """Item-kNN co-occurrence scores for a history (all zero for items nobody interacted with)."""
        user = UserContext(history=[Interaction(item_id=item_id) for item_id in history])
        return np.asarray(self._fitted("itemknn").score(user, self.items))

    def _fitted(self, name: str) -> Retriever:
        with self._fit_lock:  # fitted on first use; shared by every thread after that
            if name not in self._retrievers:
                catalog = dict(zip(self.ids, self.items, strict=True))
                self._retrievers[name] = make_retriever(name).fit(self.source.histories, catalog)
            return self._retrievers[name]

    def vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        return self.embeddings[[self.position[item_id] for item_id in item_ids]]

    def _similarity(self, vectors: np.ndarray) -> np.ndarray:
        query = np.asarray(vectors, dtype=np.float32).mean(axis=0)
        norm = float(np.linalg.norm(query))
        if norm == 0.0:
            return np.zeros(len(self.ids))
        return (self.embeddings @ (query / norm)).astype(float)


_embedder_lock = threading.Lock()
_embedder: EmbeddingRetriever | None = None


def shared_embedder() -> EmbeddingRetriever:
    """One embedding model per process, loaded on first use (loading costs seconds; encoding is cheap)."""
    global _embedder
    with _embedder_lock:
        if _embedder is None:
            _embedder = EmbeddingRetriever(batch_size=128)
            _embedder.load_model()
        return _embedder


def index_cache_dir() -> Path:
    return cache_root() / "catalog-index"


def build_index(source: CatalogSource, embedder: EmbeddingRetriever | None = None) -> CatalogIndex:
    """Load the catalogue's index from the disk cache, or build and store it."""
    started = time.perf_counter()
    embedder = embedder or shared_embedder()
    key = content_hash(source.catalog)
    folder = index_cache_dir() / key[:32]
    stored = _read(folder)
    if stored is not None:
        embeddings, bm25 = stored
        status = "hit"
    else:
        texts = [search_text(item) for item in source.catalog]
        embeddings = np.asarray(embedder.encode(texts), dtype=np.float32)
        bm25 = build_bm25_index(texts)
        _write(folder, embeddings, bm25, source)
        status = "built"
    return CatalogIndex(source, key, embeddings, bm25, embedder, status, time.perf_counter() - started)


def _read(folder: Path) -> tuple[np.ndarray, Any] | None:
    if not (folder / "meta.json").is_file():  # written last: its presence means the index is whole
        return None
    try:
        embeddings = np.load(folder / "embeddings.npy")
        bm25 = load_bm25s().BM25.load(str(folder / "bm25"), show_progress=False, verbosity=0)
    except (OSError, ValueError, KeyError):
        return None  # unreadable: rebuild
    return embeddings, bm25


def _write(folder: Path, embeddings: np.ndarray, bm25: Any, source: CatalogSource) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".index-", dir=folder.parent))
    try:
        np.save(staging / "embeddings.npy", embeddings)
        bm25.save(str(staging / "bm25"), show_progress=False)
        origin = str(source.path.resolve()) if source.path else None
        meta = {"format": INDEX_FORMAT, "embedder": EMBEDDER_NAME, "items": len(embeddings), "source": origin}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if origin:
            _remove_stale(folder.parent, origin)
        with contextlib.suppress(OSError):  # another process stored the same index first: it is identical
            staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_stale(root: Path, origin: str) -> None:
    """Indexes of earlier contents of the same file are never read again: delete them."""
    for meta_path in root.glob("*/meta.json"):
        if meta_path.parent.name.startswith("."):  # a staging folder, maybe the one about to be stored
            continue
        try:
            if json.loads(meta_path.read_text()).get("source") == origin:
                shutil.rmtree(meta_path.parent, ignore_errors=True)
        except (OSError, ValueError):
            continue


_open_indexes: dict[tuple[str, int, int], CatalogIndex] = {}
_open_lock = threading.Lock()


def open_catalog(catalog: str | Path | Catalog | CatalogSource | CatalogIndex) -> CatalogIndex:
    """A CatalogIndex for a path, Catalog, CatalogSource or index; a path's index is kept in memory while
    the file is unchanged (same size and modification time), so repeated calls in a process are instant."""
    if isinstance(catalog, CatalogIndex):
        return catalog
    if isinstance(catalog, Catalog):
        return build_index(CatalogSource(catalog))
    if isinstance(catalog, CatalogSource):
        return build_index(catalog)
    path = Path(catalog).expanduser()
    with _open_lock:
        stat = path.stat() if path.is_file() else None
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns) if stat else None
        if key is not None and key in _open_indexes:
            return _open_indexes[key]
        index = build_index(load_catalog_source(path))
        if key is not None:
            _open_indexes[key] = index
        return index
