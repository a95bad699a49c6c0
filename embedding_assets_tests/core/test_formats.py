"""PDF, DOCX and texts in other encodings, on real files the tests generate: exact phrases and pages."""

import io
import zipfile

import pytest

from embedding_assets.core.chunking import PAGE_BREAK, ChunkingConfig, chunk_document
from embedding_assets.core.hashing import content_hash, normalize_text
from embedding_assets.core.sources import Document, Skip
from embedding_assets.core.sources.formats import decode_text
from embedding_assets.core.sources.records import parse, versioned
from embedding_assets_tests.generated_files import (
    FRENCH,
    GERMAN,
    JAPANESE,
    PAGES,
    UNDECODABLE,
    docx,
    image_only_pdf,
    paged,
    pdf,
)


def words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def only_document(name: str, data: bytes) -> Document:
    (item,) = parse(name, data)
    assert isinstance(item, Document), item
    return item


def test_a_three_page_pdf_keeps_every_page_and_its_exact_text() -> None:
    doc = only_document("report.pdf", pdf(PAGES))
    assert doc.text == paged(*PAGES)
    assert doc.text.split(PAGE_BREAK)[1:] == list(PAGES)
    assert doc.doc_hash == content_hash(doc.text) and doc.encoding is None


def test_pdf_chunks_never_span_two_pages_and_record_their_page() -> None:
    long_page = " ".join(f"Sentence {i} of the long second page." for i in range(40))
    doc = only_document("report.pdf", pdf([PAGES[0], long_page, "", PAGES[2]]))  # page 3 has no text
    chunks = chunk_document(doc.doc_id, doc.text, ChunkingConfig(max_tokens=60, overlap_tokens=8), words)
    pages = [c.page for c in chunks]
    assert pages[0] == 1 and pages[-1] == 4 and 3 not in pages
    assert pages == sorted(pages) and pages.count(2) > 2, "the long page is several chunks, all on page 2"
    assert [c.position for c in chunks] == list(range(len(chunks)))
    texts = {1: PAGES[0], 2: long_page, 4: PAGES[2]}
    for chunk in chunks:  # PDF lines wrap where the page did: compare the words
        assert " ".join(chunk.text.split()) in texts[chunk.page or 0], f"{chunk.chunk_id} is not on page {chunk.page}"
    assert chunks[0].text == PAGES[0] and chunks[-1].text == PAGES[2]


def test_three_short_pages_are_three_chunks_not_one() -> None:
    chunks = chunk_document("r.pdf", paged(*PAGES), ChunkingConfig(max_tokens=200, overlap_tokens=0), words)
    assert [(c.text, c.page) for c in chunks] == [(PAGES[0], 1), (PAGES[1], 2), (PAGES[2], 3)]
    unpaged = chunk_document("r.txt", "\n\n".join(PAGES), ChunkingConfig(max_tokens=200, overlap_tokens=0), words)
    assert len(unpaged) == 1 and unpaged[0].page is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (pdf(["secret words"], user_password="user"), "encrypted PDF: it needs a password to open"),
        (image_only_pdf(), "no text layer on its 1 page(s): an image-only or scanned PDF (no OCR)"),
        (pdf(PAGES)[:400], "corrupt or not a PDF (Failed to load document (PDFium: Data format error).)"),
        (b"", "corrupt or not a PDF (Failed to load document (PDFium: Data format error).)"),
    ],
    ids=["encrypted", "image-only", "truncated", "empty"],
)
def test_unreadable_pdfs_are_skipped_with_their_reason(data: bytes, reason: str) -> None:
    assert parse("bad.pdf", data) == [Skip("bad.pdf", reason)]


def test_a_pdf_with_only_an_owner_password_is_read() -> None:
    """Permissions-only encryption (an empty user password) is what most 'protected' PDFs have."""
    assert only_document("open.pdf", pdf(["anyone may read this"], user_password="")).text == paged(
        "anyone may read this"
    )


def test_docx_headings_become_heading_boundaries() -> None:
    doc = only_document("manual.docx", docx())
    setup = " ".join(f"Setup sentence number {i} explains one more step." for i in range(12))
    assert doc.text == (
        f"# Installation\n\nRun the installer once; the condition is true afterwards.\n\n{setup}\n\n"
        "## Usage\n\nCall the function with a path.\n\nalpha | beta"
    )
    chunks = chunk_document(doc.doc_id, doc.text, ChunkingConfig(max_tokens=200, overlap_tokens=0), words)
    assert [c.text.split("\n")[0] for c in chunks] == ["# Installation", "## Usage"]
    assert all(c.page is None for c in chunks)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"PK\x03\x04 not a zip", "corrupt DOCX: not a zip package"),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512),
            "encrypted DOCX (or a legacy .doc renamed): not a Word 2007+ zip package",
        ),
    ],
    ids=["not-a-zip", "encrypted"],
)
def test_unreadable_docx_are_skipped_with_their_reason(data: bytes, reason: str) -> None:
    assert parse("bad.docx", data) == [Skip("bad.docx", reason)]


def test_a_docx_with_broken_xml_is_skipped() -> None:
    package = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx())) as good, zipfile.ZipFile(package, "w") as broken:
        for item in good.infolist():
            broken.writestr(
                item.filename, b"<w:document><oops" if item.filename == "word/document.xml" else good.read(item)
            )
    (skip,) = parse("bad.docx", package.getvalue())
    assert isinstance(skip, Skip) and skip.reason.startswith("corrupt DOCX (ExpatError")


@pytest.mark.parametrize(
    ("text", "codec", "detected"),
    [
        (FRENCH, "cp1252", "cp1252"),
        # Latin-1's printable characters are Windows-1252's: the same text, under the commoner name.
        (GERMAN, "latin-1", "cp1252"),
        (JAPANESE, "shift_jis", "cp932"),  # Windows' Shift_JIS, a superset
        (
            "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва — столица России.\n" * 2,
            "cp1251",
            "cp1251",
        ),
    ],
    ids=["cp1252", "latin-1", "shift_jis", "cp1251"],
)
def test_texts_in_other_encodings_are_decoded_and_the_encoding_recorded(text: str, codec: str, detected: str) -> None:
    doc = only_document("legacy.txt", text.encode(codec))
    assert doc.text == normalize_text(text)
    assert doc.encoding == detected


def test_exact_phrases_survive_detection() -> None:
    assert (
        "le comité a présenté son rapport à l\u2019assemblée générale"
        in only_document("f.md", FRENCH.encode("cp1252")).text.lower()
    )
    assert "Straße für Fußgänger" in only_document("g.rst", GERMAN.encode("latin-1")).text
    assert "東京は日本の首都" in only_document("j.txt", JAPANESE.encode("shift_jis")).text


def test_utf16_with_a_byte_order_mark_is_read() -> None:
    assert decode_text("Grüße aus Köln".encode("utf-16")) == ("Grüße aus Köln", "utf-16")


def test_utf8_is_read_as_before() -> None:
    doc = only_document("u.txt", "\ufeffcafé".encode())
    assert (doc.text, doc.encoding) == ("café", None)


def test_only_undecodable_texts_are_skipped() -> None:
    assert parse("garbled.txt", UNDECODABLE) == [
        Skip("garbled.txt", "not valid UTF-8 (byte 6), and no other encoding fits it")
    ]
    assert parse("binary.txt", b"\x89PNG\x00\x00\x00\x0dIHDR") == [Skip("binary.txt", "binary content (NUL bytes)")]


def test_json_records_stay_utf8_only() -> None:
    """JSON is UTF-8 by its RFC (8259): a record file in another encoding is refused, not guessed."""
    assert parse("r.jsonl", '{"id": "a", "text": "café"}'.encode("cp1252")) == [
        Skip("r.jsonl", "not valid UTF-8 (byte 24)")
    ]


def test_a_keys_version_carries_its_reader() -> None:
    """A reader that changes makes the change index read that suffix's keys again, and only those."""
    assert versioned("a.html", "10:5") == "10:5|html2"
    assert versioned("a.txt", "10:5") == "10:5|text2"
    assert versioned("a.pdf", "etag") == "etag|pdf1"
    assert versioned("a.jsonl", "10:5") == "10:5"
    assert versioned("a.txt", "") == "", "an unknown version stays unknown"
