"""How many ONNX Runtime threads the local model should use: chunks per second by configuration.

The same 640 real chunks (Python's reference topics, cut by the pipeline's chunker) are embedded by
one process, then by two processes at once (two runs sharing a worker), with ONNX Runtime's default
(a thread per core, idle threads spin-waiting) and with spinning off at 1 and 2 threads. Every
configuration must give the same vectors. Writes benchmarks/model_threads.md.
"""

import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from embedding_assets.core.chunking import ChunkingConfig, chunk_document
from embedding_assets.core.embedders import local_minilm, make_embedder

CHUNKS = int(os.environ.get("MODEL_THREADS_CHUNKS", "640"))
CONFIGS = {  # name → (intra-op threads, allow spinning)
    "onnxruntime default (a thread per core, spinning)": (None, True),
    "2 threads, no spinning": (2, False),
    "1 thread, no spinning": (1, False),
}
OUT = Path(__file__).with_name("model_threads.md")


def chunks() -> list[str]:
    from pydoc_data.topics import topics

    embedder = make_embedder("local:all-MiniLM-L6-v2")
    texts: list[str] = []
    for name in sorted(topics):
        texts += [c.text for c in chunk_document(name, topics[name], ChunkingConfig(200, 32), embedder.count_tokens)]
    return texts[:CHUNKS]


def session(threads: int | None, spinning: bool) -> object:
    """A session like ``local_minilm._session`` builds, with spinning as given."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    model = local_minilm._package().model_path()
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def embed(config: tuple[int | None, bool], texts: list[str], results: "multiprocessing.Queue[tuple]") -> None:
    """Embed ``texts`` with the pipeline's embedder on a session of ``config``; report time and vectors."""
    local_minilm._session.cache_clear()
    built = session(*config)
    local_minilm._session = lambda _threads: built  # type: ignore[assignment]
    embedder = make_embedder("local:all-MiniLM-L6-v2")
    embedder.embed(texts[:32])  # warm up
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    results.put((time.perf_counter() - started, vectors))


def run(config: tuple[int | None, bool], texts: list[str], processes: int) -> tuple[float, np.ndarray]:
    """Chunks per second summed over ``processes`` running at once, and the first one's vectors."""
    results: multiprocessing.Queue[tuple] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=embed, args=(config, texts, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(len(texts) / seconds for seconds, _ in outcomes), outcomes[0][1]


def main() -> None:
    texts = chunks()
    rows, reference = [], None
    for name, config in CONFIGS.items():
        alone, vectors = run(config, texts, 1)
        shared, _ = run(config, texts, 2)
        reference = vectors if reference is None else reference
        same = bool(np.allclose(vectors, reference, atol=1e-6))
        rows.append((name, alone, shared, same))
    base_alone, base_shared = rows[0][1], rows[0][2]
    lines = [
        "# Local model threads",
        "",
        f"{len(texts)} chunks of Python's reference topics, all-MiniLM-L6-v2 int8, batches of 16, on "
        f"{os.cpu_count()} cores. Written by `benchmarks/model_threads.py` (`make bench`).",
        "",
        "| configuration | one process | two processes at once (sum) | same vectors |",
        "|---|---|---|---|",
        *(
            f"| {name} | {alone:.1f} chunks/s ({alone / base_alone:.2f}x) | "
            f"{shared:.1f} chunks/s ({shared / base_shared:.2f}x) | {'yes' if same else 'NO'} |"
            for name, alone, shared, same in rows
        ),
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()
