"""The local model's transformer run by ONNX Runtime, int8-quantized (``LOCAL_BACKEND=onnx-int8``).

Opt-in and gated: the backend is part of the embedder's fingerprint, so switching it builds a
new index (blue/green) that the evaluation gate scores before it serves (docs/indexing.md).

Why this is hand-written: sentence-transformers' own ONNX path (``backend="onnx"``,
``export_dynamic_quantized_onnx_model``) needs ``optimum-onnx``, and every optimum-onnx release
requires ``transformers<4.58`` while the pinned sentence-transformers 6.2 requires
``transformers==5.24.0`` (BENCHMARKS.md). So only the model's transformer (a ``BertModel`` for
MiniLM) is exported here, with ``torch.onnx.export`` and quantized with onnxruntime's
``quantize_dynamic``; tokenizing, pooling and normalising stay the sentence-transformers
model's own modules, so the pooling is exactly the model's configuration.

The export happens at first use, offline, into ``<DATA_DIR>/models/onnx/`` under a name keyed by
the model files and the library versions, and is reused afterwards. It is written to a temporary
file and renamed into place, so a process killed mid-export leaves no file that a later run
would load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from tasks.errors import EmbedderUnavailable

logger = logging.getLogger(__name__)

#: Bump when the export recipe changes (opset, quantization options): old files are not reused.
EXPORT_RECIPE = 1
#: ONNX opset of the export (onnxruntime 1.32 runs up to 23; 17 has LayerNormalization).
OPSET = 17
#: Packages whose versions change the exported graph or its quantization.
_VERSIONED = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime")
_export_lock = threading.Lock()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def export_key(model_path: str) -> str:
    """A short hash of what the exported file depends on: the model files, versions, recipe.

    A local model folder is identified by its files' names and sizes and its small JSON files'
    contents (hashing the weights themselves would read them on every start); a hub name by
    itself.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"recipe": EXPORT_RECIPE, "opset": OPSET}).encode())
    for package in _VERSIONED:
        digest.update(f"{package}={_version(package)};".encode())
    root = Path(model_path)
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            digest.update(f"{rel}:{path.stat().st_size};".encode())
            if path.suffix == ".json" and path.stat().st_size < 1_000_000:
                digest.update(path.read_bytes())
    else:
        digest.update(model_path.encode())
    return digest.hexdigest()[:16]


def export_path(export_dir: Path, model_name: str, model_path: str) -> Path:
    """Where the int8 export of ``model_path`` lives in ``export_dir``."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name.lower())
    return export_dir / f"{slug}-{export_key(model_path)}.int8.onnx"


def _keyword_forward(model: Any, names: Sequence[str]) -> Any:
    """A module whose positional inputs reach ``model`` by keyword (``names``, in order).

    The legacy exporter passes inputs positionally, and ``BertModel.forward``'s positional
    order does not match the tokenizer's outputs (a tensor lands in ``use_cache``), also when
    they are given as ``kwargs``.
    """
    import torch

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state  # type: ignore[no-any-return]

    return Forward().eval()


#: A temporary export folder older than this is a killed export's leftover (an export takes
#: seconds to minutes), removed by the next export.
STALE_EXPORT_S = 3600


def _remove_stale_exports(folder: Path) -> None:
    for stale in folder.glob(".export-*"):
        try:
            if time.time() - stale.stat().st_mtime > STALE_EXPORT_S:
                shutil.rmtree(stale, ignore_errors=True)
        except FileNotFoundError:
            pass  # another process removed it first


def export_int8(st_model: Any, target: Path) -> None:
    """Export ``st_model``'s transformer to ONNX, quantize it to int8, write it at ``target``.

    Atomic: the file appears at ``target`` only once complete (written beside it under a
    temporary name, flushed, renamed).
    """
    import torch
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        QuantType,
        quantize_dynamic,
    )

    transformer = st_model[0]
    auto_model = transformer.auto_model
    sample = st_model.preprocess(["an example sentence", "a second, somewhat longer example"])
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_exports(target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        int8 = Path(tmp) / "model.int8.onnx"
        axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "token_embeddings"]}
        # Eager attention exports as plain MatMul/Softmax, which quantizes and runs faster in
        # ONNX Runtime than the SDPA graph (measured: BENCHMARKS.md); the model is shared with
        # the torch backend in this process, so its setting is restored afterwards.
        previous = auto_model.config._attn_implementation
        auto_model.set_attn_implementation("eager")
        try:
            # The tracer warns that shape checks become constants: the graph is checked against
            # torch on other batch sizes and lengths (tests/embedders/test_onnx_backend.py).
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _keyword_forward(auto_model, names),
                    tuple(sample[n] for n in names),
                    str(fp32),
                    input_names=names,
                    output_names=["token_embeddings"],
                    dynamic_axes=axes,
                    opset_version=OPSET,
                    dynamo=False,
                )
        finally:
            auto_model.set_attn_implementation(previous or "sdpa")
        # Per-channel scales: per-tensor int8 weights gave mean cosine 0.95 to fp32 on the
        # demo catalog, per-channel 0.99 (BENCHMARKS.md).
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
        with open(int8, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(int8, target)
    logger.info("Exported %s to %s", type(auto_model).__name__, target)


class OnnxInt8Model:
    """A sentence-transformers model whose transformer runs in ONNX Runtime (int8).

    ``encode`` mirrors ``SentenceTransformer.encode`` for what the embedder uses: texts sorted
    by length, batched, tokenized with the model's tokenizer and ``max_seq_length``, token
    embeddings from the ONNX session, then the model's own modules after the transformer
    (Pooling, Normalize, ...), then L2-normalised.
    """

    def __init__(self, st_model: Any, onnx_file: Path) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]
        import torch

        self.st_model = st_model
        self.tokenizer = st_model.tokenizer
        self.max_seq_length = st_model.max_seq_length
        options = ort.SessionOptions()
        # As many threads as torch would use (one per core); one inter-op thread, since
        # the graph is a chain.
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(onnx_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise EmbedderUnavailable(
                f"Cannot load the ONNX export {onnx_file}: {exc}. Delete the file (it is "
                "exported again at the next start) or set LOCAL_BACKEND=torch."
            ) from None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def get_sentence_embedding_dimension(self) -> int:
        """The model's output dimension (unchanged by the backend)."""
        model = self.st_model
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit-length vectors of ``texts`` (float32, one row per text, input order)."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.get_sentence_embedding_dimension()), dtype=np.float32)
        modules = list(self.st_model)[1:]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            features = self.st_model.preprocess([texts[i] for i in idx])
            feed = {n: features[n].numpy() for n in self.input_names}
            (tokens,) = self.session.run(["token_embeddings"], feed)
            state: dict[str, Any] = {
                "token_embeddings": torch.from_numpy(tokens),
                "attention_mask": features["attention_mask"],
            }
            with torch.no_grad():
                for module in modules:
                    state = module(state)
            vectors = state["sentence_embedding"].numpy()
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out[idx] = vectors / np.maximum(norms, 1e-12)
        return out


def load_int8(st_model: Any, model_name: str, model_path: str, export_dir: Path) -> OnnxInt8Model:
    """The int8 ONNX model of ``st_model``, exported into ``export_dir`` on first use."""
    target = export_path(export_dir, model_name, model_path)
    with _export_lock:
        if not target.is_file():
            logger.info("No ONNX export of %s at %s yet: exporting (once)", model_name, target)
            try:
                export_int8(st_model, target)
            except Exception as exc:
                raise EmbedderUnavailable(
                    f"Exporting {model_name!r} to ONNX failed: {exc}. Set LOCAL_BACKEND=torch "
                    "to embed with PyTorch."
                ) from exc
    return OnnxInt8Model(st_model, target)
