"""Loaders on real files the test writes, including broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.ingest.loaders import load_file


def _pdf(path: Path, pages: list[str]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(path))


def _docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("Travel policy", level=1)
    d.add_paragraph("Book trains for trips under four hours.")
    d.add_heading("Expenses", level=2)
    d.add_paragraph("Meals are reimbursed up to 40 euros a day.")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Hotel cap"
    table.rows[0].cells[1].text = "150 euros"
    d.save(str(path))


def test_text_and_markdown(tmp_path):
    (tmp_path / "a.txt").write_text("plain words")
    (tmp_path / "b.md").write_text("intro\n\n# Guide Title\n\nbody")
    a = load_file(tmp_path / "a.txt", "a").documents[0]
    b = load_file(tmp_path / "b.md", "b").documents[0]
    assert a.text == "plain words" and a.title == "a" and a.content_hash
    assert b.title == "Guide Title" and b.metadata["format"] == "md"


def test_html_keeps_readable_text_only(tmp_path):
    (tmp_path / "p.html").write_text(
        "<html><head><title>Leave</title><style>p{color:red}</style><script>var x=1;</script></head>"
        "<body><nav>Home | About</nav><h1>Annual leave</h1><p>You get <b>25</b> days.</p>"
        "<ul><li>Carry over 5 days</li></ul></body></html>"
    )
    doc = load_file(tmp_path / "p.html", "p").documents[0]
    assert doc.title == "Leave"
    assert doc.text == "# Annual leave\n\nYou get 25 days.\n\nCarry over 5 days"
    assert "<" not in doc.text and "color" not in doc.text and "var x" not in doc.text and "Home" not in doc.text


def test_pdf_and_docx(tmp_path):
    _pdf(tmp_path / "r.pdf", ["First page about vaccines.", "Second page about masks."])
    _docx(tmp_path / "t.docx")
    pdf = load_file(tmp_path / "r.pdf", "r").documents[0]
    assert "vaccines" in pdf.text and "masks" in pdf.text and pdf.metadata["pages"] == 2
    doc = load_file(tmp_path / "t.docx", "t").documents[0]
    assert doc.text.startswith("# Travel policy\n\nBook trains")
    assert "## Expenses" in doc.text and "Hotel cap | 150 euros" in doc.text


def _table_pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 10, "Equipment budget for 2027.")
    with pdf.table() as table:
        for row in [("Item", "Owner", "Cost"), ("Laptop", "IT", "1200"), ("Desk", "Facilities", "450")]:
            cells = table.row()
            for value in row:
                cells.cell(value)
    pdf.output(str(path))


def _scanned_pdf(path: Path, words: str) -> None:
    """A page that is only an image of text, as a scanner makes it."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1700, 300), 255)
    ImageDraw.Draw(image).text((40, 100), words, fill=0, font=ImageFont.load_default(size=64))
    image.save(path.with_suffix(".png"))
    pdf = FPDF()
    pdf.add_page()
    pdf.image(str(path.with_suffix(".png")), x=10, y=20, w=190)
    pdf.output(str(path))


def test_pdf_tables_keep_each_row_with_its_header(tmp_path):
    from ragtune.ingest.loaders import LoadOptions

    _table_pdf(tmp_path / "budget.pdf")
    plain = load_file(tmp_path / "budget.pdf", "b").documents[0].text
    tables = load_file(tmp_path / "budget.pdf", "b", LoadOptions(pdf_tables=True)).documents[0].text
    assert "Item: Laptop; Owner: IT; Cost: 1200" not in plain
    assert "Equipment budget for 2027." in tables
    assert "Item: Laptop; Owner: IT; Cost: 1200" in tables and "Item: Desk; Owner: Facilities; Cost: 450" in tables
    assert tables.count("Laptop") == 1  # the table's cells are not also kept as loose text


def test_ocr_reads_a_scanned_page_only_when_asked(tmp_path):
    import os

    from ragtune.ingest.loaders import LoadOptions

    if not Path("/usr/bin/tesseract").exists():
        if os.environ.get("CI"):
            raise AssertionError("CI must install Debian's tesseract-ocr (scripts/ensure-system-packages.sh)")
        pytest.skip("Debian's tesseract-ocr is not installed here")
    _scanned_pdf(tmp_path / "scan.pdf", "Quarterly safety inspection passed")
    refused = load_file(tmp_path / "scan.pdf", "s")
    assert not refused.documents and "set ingest.ocr=true" in refused.failures[0].reason
    text = load_file(tmp_path / "scan.pdf", "s", LoadOptions(ocr=True)).documents[0].text
    assert "safety inspection" in text.lower(), text


def test_json_jsonl_and_beir_records(tmp_path):
    (tmp_path / "one.json").write_text(json.dumps({"id": "x1", "title": "T", "content": "hello", "metadata": {"team": "a"},
                                                   "acl": {"groups": ["eng"]}}))
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"_id": "4983", "title": "Microstructural development", "text": "Alterations of the brain"}) + "\n"
        + "{not json\n"
        + json.dumps({"_id": "5836", "title": "", "text": "Induction of myelodysplasia"}) + "\n"
        + json.dumps({"_id": "9", "text": 42}) + "\n"
    )
    one = load_file(tmp_path / "one.json", "one.json").documents[0]
    assert (one.id, one.title, one.text, one.metadata["team"], one.acl.groups) == ("x1", "T", "hello", "a", ("eng",))
    result = load_file(tmp_path / "corpus.jsonl", "corpus")
    assert [d.id for d in result.documents] == ["4983", "5836"]
    assert result.documents[0].title == "Microstructural development"
    reasons = {f.source: f.reason for f in result.failures}
    assert set(reasons) == {f"{tmp_path / 'corpus.jsonl'}:2", f"{tmp_path / 'corpus.jsonl'}:4"}
    assert "must be a string" in reasons[f"{tmp_path / 'corpus.jsonl'}:4"]


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "not a readable PDF"),
        ("broken.docx", b"PK\x03\x04 not a zip", "not a readable .docx"),
        ("broken.json", b"{\"a\": ", "not valid JSON (line 1"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not valid UTF-8"),
        ("binary.txt", b"\x00\x01\x02", "looks binary"),
        ("empty.md", b"   \n", "file is empty"),
        ("image.png", b"\x89PNG", "unsupported file type '.png'"),
    ],
)
def test_broken_files_are_reported_not_raised(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    result = load_file(tmp_path / name, name)
    assert result.documents == []
    assert len(result.failures) == 1 and result.failures[0].source == str(tmp_path / name)
    assert reason in result.failures[0].reason
