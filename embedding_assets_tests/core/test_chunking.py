import itertools
import re
from pydoc_data.topics import topics

import pytest

from embedding_assets.core.chunking import ChunkingConfig, chunk_document
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.hashing import content_hash, normalize_text


def words(texts):
    return [len(t.split()) for t in texts]


def test_chunks_fit_the_model_tokenizer_and_are_deterministic(minilm: Embedder) -> None:
    config = ChunkingConfig(max_tokens=120, overlap_tokens=20)
    text = normalize_text(topics["exceptions"])
    first = chunk_document("exceptions", text, config, minilm.count_tokens)
    again = chunk_document("exceptions", text, config, minilm.count_tokens)
    assert first == again and len(first) > 3
    for position, chunk in enumerate(first):
        assert chunk.chunk_id == f"exceptions#{position}" and chunk.position == position
        assert chunk.chunk_hash == content_hash(chunk.text)
        assert chunk.token_count == minilm.count_tokens([chunk.text])[0]
        assert chunk.token_count <= config.max_tokens + 8  # units are counted apart; joins may add a few


def test_every_word_of_the_document_lands_in_some_chunk(minilm: Embedder) -> None:
    text = normalize_text(topics["if"] + "\n\n" + topics["while"])
    chunks = chunk_document("d", text, ChunkingConfig(60, 10), minilm.count_tokens)
    covered = set(" ".join(c.text for c in chunks).split())
    assert set(text.split()) <= covered


def test_headings_start_new_chunks() -> None:
    section = "Sentence number {}. " * 30
    text = "# One\n\n" + section.format(*range(30)) + "\n\n# Two\n\nShort text under two."
    chunks = chunk_document("d", text, ChunkingConfig(max_tokens=200, overlap_tokens=0), words)
    assert [c.text.splitlines()[0] for c in chunks] == ["# One", "# Two"]


def test_a_tiny_section_joins_the_next_one() -> None:
    text = "# One\n\nTiny.\n\n# Two\n\nAlso small."
    chunks = chunk_document("d", text, ChunkingConfig(max_tokens=200, overlap_tokens=0), words)
    assert [c.text for c in chunks] == [text]


def test_rest_underlined_headings_are_recognised() -> None:
    body = " ".join(f"Word{i}." for i in range(60))
    text = f"Title\n*****\n\n{body}\n\nSub section\n===========\n\nMore text here."
    chunks = chunk_document("d", text, ChunkingConfig(max_tokens=100, overlap_tokens=0), words)
    assert chunks[-1].text.startswith("Sub section\n===========")


def test_overlap_repeats_trailing_sentences_within_a_section() -> None:
    text = " ".join(f"This is sentence {i}." for i in range(40))
    chunks = chunk_document("d", text, ChunkingConfig(max_tokens=20, overlap_tokens=8), words)
    assert len(chunks) > 3
    sentence = re.compile(r"This is sentence \d+\.")
    for previous, current in itertools.pairwise(chunks):
        before, after = sentence.findall(previous.text), sentence.findall(current.text)
        repeated = [s for s in after if s in before]
        assert repeated == before[-len(repeated) :] and 0 < len(repeated) < len(before)
        assert sum(len(s.split()) for s in repeated) <= 8


def test_text_without_boundaries_is_cut_to_fit() -> None:
    text = "x" * 5000

    def chars(texts):
        return [len(t) // 10 for t in texts]

    chunks = chunk_document("d", text, ChunkingConfig(max_tokens=50, overlap_tokens=0), chars)
    assert all(c.token_count <= 50 for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_empty_text_has_no_chunks() -> None:
    assert chunk_document("d", "", ChunkingConfig(), words) == []


@pytest.mark.parametrize(("size", "overlap"), [(4, 0), (100, 50), (100, -1)])
def test_bad_configs_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match=r"chunk (size|overlap)"):
        ChunkingConfig(size, overlap)
