"""The text of files that are not UTF-8 plain text: other encodings, PDF and DOCX.

Each reader returns text or raises ``Unreadable`` with the reason a person needs (encrypted, no text
layer, corrupt), which becomes the file's skip. The libraries are imported on first use.
"""

import codecs
import io
import threading
import unicodedata
import zipfile

from embedding_assets.core.chunking import PAGE_BREAK
from embedding_assets.core.hashing import normalize_text
from embedding_assets.core.html_text import html_to_text

SNIFF_CHARS = 8192  # what is looked at for NUL bytes and control characters
MAX_CONTROL_SHARE = 0.01  # a decoding with more control characters than this is not text
# Windows-1252 wins over candidates that fit about as well: charset-normalizer ranks the single-byte
# Latin code pages, which differ in a few letters, almost alike, and 1252 is by far the commonest.
PREFERRED_ENCODING = "cp1252"
NEAR = 0.05  # how much more chaos (and less coherence) the preferred encoding may show and still win
# UTF-32's marks first: UTF-32LE's begins with UTF-16LE's.
_BOMS = [(codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32")]
_BOMS += [(codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")]
# UTF-16/32 without a byte-order mark are never guessed: any even-length bytes decode as something.
_UNGUESSED = ["utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le"]
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an encrypted Office file (or a legacy .doc)
_PDFIUM = threading.Lock()  # PDFium is not thread-safe, and pypdfium2 leaves serialising it to callers
_SOFT_HYPHEN = "\ufffe"  # PDFium's mark of a word hyphenated across a line break: the word is whole


class Unreadable(ValueError):
    """The bytes cannot be a document (not text, encrypted, corrupt); the message is the skip's reason."""


def decode_text(data: bytes) -> tuple[str, str | None]:
    """(text, encoding): UTF-8 (a BOM is dropped; encoding None), UTF-16/32 by their BOM, else the
    encoding charset-normalizer detects. Raises ``Unreadable`` for binary content or no fitting encoding."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _strict(data, encoding, f"not valid {encoding.upper()} after its byte-order mark"), encoding
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        utf8_error = f"not valid UTF-8 (byte {err.start})"
    else:
        if "\x00" in text[:SNIFF_CHARS]:
            raise Unreadable("binary content (NUL bytes)")
        return text, None
    if b"\x00" in data[:SNIFF_CHARS]:
        raise Unreadable("binary content (NUL bytes)")
    detected = _detect(data)
    if detected is None:
        raise Unreadable(f"{utf8_error}, and no other encoding fits it")
    text = _strict(data, detected, f"{utf8_error}, and no other encoding fits it")
    if _control_share(text[:SNIFF_CHARS]) > MAX_CONTROL_SHARE:
        raise Unreadable(f"{utf8_error}, and as {detected} it is full of control characters (binary?)")
    return text, detected


def pdf_text(data: bytes) -> str:
    """The PDF's text, each page normalised and preceded by ``PAGE_BREAK`` (pages without text stay as
    empty pages, so page numbers hold). Raises ``Unreadable`` when it is encrypted, corrupt or has no text."""
    import pypdfium2 as pdfium

    pages: list[str] = []
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as err:
            if getattr(err, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
                raise Unreadable("encrypted PDF: it needs a password to open") from None
            raise Unreadable(f"corrupt or not a PDF ({err})") from None
        try:
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                try:
                    pages.append(normalize_text(textpage.get_text_range().replace(_SOFT_HYPHEN, "")))
                finally:
                    textpage.close()
                    page.close()
        except pdfium.PdfiumError as err:
            raise Unreadable(f"corrupt PDF ({err})") from None
        finally:
            pdf.close()
    if not any(pages):
        raise Unreadable(f"no text layer on its {len(pages)} page(s): an image-only or scanned PDF (no OCR)")
    return "".join(PAGE_BREAK + page for page in pages)


def docx_text(data: bytes) -> str:
    """A DOCX's text through mammoth's HTML, so headings and paragraphs keep their structure."""
    import mammoth

    if data.startswith(_OLE_SIGNATURE):
        raise Unreadable("encrypted DOCX (or a legacy .doc renamed): not a Word 2007+ zip package")
    skip_images = mammoth.images.img_element(lambda image: {})
    try:
        result = mammoth.convert_to_html(io.BytesIO(data), convert_image=skip_images)
    except zipfile.BadZipFile:
        raise Unreadable("corrupt DOCX: not a zip package") from None
    except Exception as err:  # whatever mammoth meets in a broken package (bad XML, missing parts) is a skip
        raise Unreadable(f"corrupt DOCX ({type(err).__name__}: {err})") from None
    return html_to_text(str(result.value))


def _detect(data: bytes) -> str | None:
    """The encoding charset-normalizer finds best for ``data``, leaning to ``PREFERRED_ENCODING``."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data, cp_exclusion=_UNGUESSED, enable_fallback=False))
    if not matches:
        return None
    best = matches[0]
    for match in matches:
        if (
            PREFERRED_ENCODING in match.could_be_from_charset  # the encodings that give this match's text
            and match.chaos <= best.chaos + NEAR
            and match.coherence >= best.coherence - NEAR
        ):
            return PREFERRED_ENCODING
    return str(best.encoding)


def _strict(data: bytes, encoding: str, reason: str) -> str:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise Unreadable(reason) from None


def _control_share(text: str) -> float:
    """The share of control characters other than tab, line and page breaks."""
    controls = sum(1 for c in text if c not in "\t\n\r\f" and unicodedata.category(c) == "Cc")
    return controls / max(1, len(text))
