"""Real PDF and DOCX files made by the tests (fpdf2, python-docx), and legacy-encoded texts."""

import io
from pathlib import Path

from embedding_assets.core.chunking import PAGE_BREAK

# Three pages, each short enough that without page boundaries they would share one chunk.
PAGES = (
    "Apples grow in the orchard. The condition is true on page one.",
    "Bananas ripen in the warm room. Page two talks about bananas only.",
    "Cherries are small and red. The last page ends the report.",
)
FRENCH = (
    "Le comité a présenté son rapport à l\u2019assemblée générale. « Nous avons réalisé des économies », a déclaré "
    "la trésorière. Les élèves ont reçu leurs diplômes ; la cérémonie s\u2019est déroulée près de la fenêtre.\n"
)
GERMAN = (
    "Die Prüfung der Größe ergab, dass die Straße für Fußgänger gesperrt wird. Über die Änderungen wurde "
    "öffentlich berichtet; die Bürger äußerten ihre Meinung. Schöne Grüße aus München.\n"
)
JAPANESE = "日本語のテキストです。東京は日本の首都であり、多くの人々が住んでいます。このファイルはシフトJISです。\n"
UNDECODABLE = b"\x1b\x02\x03abc\x80\x81"  # neither UTF-8 nor text in any other encoding


def pdf(pages: tuple[str, ...] | list[str], *, user_password: str | None = None) -> bytes:
    """A PDF with one page per text (an empty text: a page without text), optionally encrypted."""
    from fpdf import FPDF
    from fpdf.enums import EncryptionMethod

    document = FPDF()
    document.set_font("helvetica", size=12)
    for text in pages:
        document.add_page()
        if text:
            document.multi_cell(0, 6, text)
    if user_password is not None:
        document.set_encryption(
            owner_password="owner", user_password=user_password, encryption_method=EncryptionMethod.AES_256
        )
    return bytes(document.output())


def image_only_pdf() -> bytes:
    """A scanned-looking PDF: a picture on its page, and no text layer."""
    from fpdf import FPDF
    from PIL import Image

    document = FPDF()
    document.add_page()
    document.image(Image.new("RGB", (120, 80), "navy"), x=10, y=10, w=120)
    return bytes(document.output())


def docx() -> bytes:
    """A Word document with two headed sections, bold text inside a sentence and a table."""
    import docx as python_docx

    document = python_docx.Document()
    document.add_heading("Installation", level=1)
    paragraph = document.add_paragraph("Run the installer once; the condition ")
    paragraph.add_run("is").bold = True
    paragraph.add_run(" true afterwards.")
    document.add_paragraph(" ".join(f"Setup sentence number {i} explains one more step." for i in range(12)))
    document.add_heading("Usage", level=2)
    document.add_paragraph("Call the function with a path.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "alpha", "beta"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def paged(*pages: str) -> str:
    """The text of a paged document holding ``pages``."""
    return "".join(PAGE_BREAK + page for page in pages)


def write_documents(folder: Path) -> Path:
    """A folder with one of every format, bad ones included."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.pdf").write_bytes(pdf(PAGES))
    (folder / "locked.pdf").write_bytes(pdf(["secret words"], user_password="user"))
    (folder / "scan.pdf").write_bytes(image_only_pdf())
    (folder / "broken.pdf").write_bytes(pdf(PAGES)[:400])
    (folder / "manual.docx").write_bytes(docx())
    (folder / "french.txt").write_bytes(FRENCH.encode("cp1252"))
    (folder / "german.md").write_bytes(GERMAN.encode("latin-1"))
    (folder / "japanese.txt").write_bytes(JAPANESE.encode("shift_jis"))
    (folder / "garbled.txt").write_bytes(UNDECODABLE)
    (folder / "page.html").write_text(
        "<html><head><style>p{}</style><script>var hidden = 1;</script></head><body><h1>Page</h1>"
        "<p>The condition <b>is</b> true.</p><table><tr><td>alpha</td><td>beta</td></tr></table></body></html>"
    )
    return folder
