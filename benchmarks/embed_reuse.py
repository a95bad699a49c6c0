"""``ShardWork.embed`` on a 15,000-chunk shard with one document changed, so every other vector is
reused from the table: its time and Python-heap peak, with the toy model at 384 dims (the model is not
the question). Prints one line; ``make bench`` runs it.

    .venv/bin/python benchmarks/embed_reuse.py
"""

import tempfile
import time
import tracemalloc
from pathlib import Path

from embedding_assets.core.chunking import ChunkingConfig
from embedding_assets.core.embedders.toy import ToyEmbedder
from embedding_assets.core.shard_work import ShardWork
from embedding_assets.core.sources import SourceFolder
from embedding_assets.core.staging import Staging
from embedding_assets.core.store import VectorStore

root = Path(tempfile.mkdtemp())
src = root / "source"
src.mkdir()
for i in range(3000):
    (src / f"d{i:05}.txt").write_text(" ".join(f"Sentence {i} {j} about shards and vectors." for j in range(5)))
emb = ToyEmbedder(384)
cfg = ChunkingConfig(8, 0)


def work() -> ShardWork:
    return ShardWork("s000", 1, Staging(root / "staging"), VectorStore(str(root / "db")), emb, cfg)


work().read_raw_documents(SourceFolder(src).read_shard("s000", 1))
print("chunks", work().chunk().chunks)
work().embed()
work().write()
(src / "d00001.txt").write_text("An edited document.")
work().read_raw_documents(SourceFolder(src).read_shard("s000", 1))
work().chunk()
w = work()
t = time.perf_counter()
tracemalloc.start()
s = w.embed()
peak = tracemalloc.get_traced_memory()[1]
print(
    f"embed with reuse: {time.perf_counter() - t:.2f} s, embedded {s.embedded}, reused {s.reused}, "
    f"Python-heap peak {peak / 1e6:.0f} MB"
)
