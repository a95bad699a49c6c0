"""How the local model should use the cores: chunks per second by configuration.

The same 640 real chunks (Python's reference topics, cut by the pipeline's chunker) are embedded by
one process, then by two processes at once (two runs sharing a worker): with ONNX Runtime's default
session (a thread per core, idle threads spin-waiting), with spinning off at 2 and 1 threads, and as
the embedder runs them, a one-thread session with a batch per core in flight. Every configuration must
give the same vectors. Writes benchmarks/model_threads.md.
"""

import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from embedding_assets.core.chunking import ChunkingConfig, chunk_document
from embedding_assets.core.embedders import local_minilm, make_embedder

CHUNKS = int(os.environ.get("MODEL_THREADS_CHUNKS", "640"))
CORES = os.cpu_count() or 1
CONFIGS = {  # name → (session's intra-op threads, allow spinning, batches in flight)
    "onnxruntime default (a thread per core, spinning), a batch at a time": (None, True, 1),
    "2 threads, no spinning, a batch at a time (our default before)": (2, False, 1),
    "1 thread, a batch at a time (`MODEL_THREADS=1`)": (1, False, 1),
    f"1 thread, {CORES} batches at a time (our default: one per core)": (1, False, CORES),
}
OUT = Path(__file__).with_name("model_threads.md")


def chunks() -> list[str]:
    from pydoc_data.topics import topics

    embedder = make_embedder("local:all-MiniLM-L6-v2")
    texts: list[str] = []
    for name in sorted(topics):
        texts += [c.text for c in chunk_document(name, topics[name], ChunkingConfig(200, 32), embedder.count_tokens)]
    return texts[:CHUNKS]


def embed(config: tuple[int | None, bool, int], texts: list[str], results: "multiprocessing.Queue[tuple]") -> None:
    """Embed ``texts`` with the pipeline's embedder on a session of ``config``; report time and vectors."""
    threads, spinning, in_flight = config
    built = local_minilm.new_session(threads, spinning)
    local_minilm._session = lambda: built  # type: ignore[assignment]
    embedder = make_embedder("local:all-MiniLM-L6-v2", threads=in_flight)
    embedder.embed(texts[:32])  # warm up
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    results.put((time.perf_counter() - started, vectors))


def run(config: tuple[int | None, bool, int], texts: list[str], processes: int) -> tuple[float, np.ndarray]:
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
