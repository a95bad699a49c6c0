"""Benchmark corpora: sections of the Linux kernel documentation (Debian's linux-doc package,
fetched with `apt-get download`), or Python's pydoc topics when that package cannot be had."""

import gzip
import re
import shutil
import subprocess
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"
_TITLE = re.compile(r"^(.+)\n([=\-~^*#]{3,})\s*$", re.M)


def kernel_sections() -> list[tuple[str, str]] | None:
    """(id, text) for every reST section of at least 20 words, or None if the package is unavailable."""
    root = CACHE / "linux-doc"
    if not root.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["apt-get", "download", "linux-doc-6.1"], cwd=CACHE, check=True, capture_output=True)
            deb = next(CACHE.glob("linux-doc-6.1_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        except (OSError, subprocess.CalledProcessError, StopIteration):
            shutil.rmtree(root, ignore_errors=True)
            return None
    sections = []
    for path in sorted(root.rglob("Documentation/**/*.rst*")):  # Debian gzips most of them
        if path.suffix not in (".rst", ".gz") or not path.name.removesuffix(".gz").endswith(".rst"):
            continue
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode(errors="replace")
        starts = [m.start() for m in _TITLE.finditer(text)] or [0]
        for i, start in enumerate(starts):
            body = text[start : starts[i + 1] if i + 1 < len(starts) else len(text)]
            if len(body.split()) >= 20:
                sections.append((f"{path.relative_to(root).as_posix()}#{i}", body))
    return sections


def pydoc_sections() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return [
        (f"{name}#{i}", part)
        for name, text in sorted(topics.items())
        for i, part in enumerate(text.split("\n\n\n"))
        if len(part.split()) >= 20
    ]


def write_corpus(sections: list[tuple[str, str]], folder: Path) -> None:
    """One .txt file per section (file names from the section ids)."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, text in sections:
        (folder / (re.sub(r"[^\w.-]+", "_", doc_id) + ".txt")).write_text(text)
