"""The quote as a PDF, drawn with fpdf2 (pure Python, no network, no font files).

The core font Helvetica covers Latin-1 only: other characters are replaced (``?``)
rather than failing the download (fpdf2 ships no Unicode font, and the plugin adds no
font file); amounts are the exact decimal strings. A quote whose discount is pending
or rejected carries a red "NOT APPROVED - DRAFT" banner and a watermark on every page.
"""

from __future__ import annotations

from fpdf import FPDF

from bastion_sales.quotes.document import QuoteDocument, money, number

# Column widths in millimetres on A4 portrait (190 mm between the margins).
COLUMNS = (("Product", 70), ("Qty", 18), ("Unit price", 26), ("Disc. %", 18),
           ("Tax %", 16), ("Total", 42))  # fmt: skip


TYPOGRAPHY = {"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"',
              "\u201d": '"', "\u2026": "...", "\u20ac": "EUR", "\u2212": "-"}  # fmt: skip


def latin1(text: object) -> str:
    """Text the core fonts can draw: typographic characters mapped, others replaced."""
    value = str(text or "")
    for old, new in TYPOGRAPHY.items():
        value = value.replace(old, new)
    return value.encode("latin-1", "replace").decode("latin-1")


class QuotePDF(FPDF):
    """A4 pages; ``watermark`` (when set) is drawn across every page."""

    watermark = ""

    def header(self) -> None:
        if not self.watermark:
            return
        self.set_font("Helvetica", "B", 60)
        self.set_text_color(240, 200, 205)
        width = self.get_string_width(self.watermark)
        with self.rotation(35, x=self.w / 2, y=self.h / 2):  # centred on the page
            self.text((self.w - width) / 2, self.h / 2 + 8, self.watermark)
        self.set_text_color(0, 0, 0)
        self.set_xy(self.l_margin, self.t_margin)


def fit(pdf: FPDF, text: str, width: float) -> str:
    """``text`` shortened with "..." to fit ``width`` mm in the current font."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "...") > width:
        text = text[:-1]
    return text.rstrip() + "..."


def render(doc: QuoteDocument, *, compress: bool = True) -> bytes:
    """The PDF; ``compress=False`` leaves the text readable in the file (tests)."""
    quote = doc.quote
    pdf = QuotePDF(orientation="P", unit="mm", format="A4")
    pdf.set_compression(compress)
    pdf.watermark = "NOT APPROVED" if doc.unapproved else ""
    pdf.set_title(latin1(doc.number))
    pdf.set_creator("Bastion")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, latin1(f"Quote {doc.number}"), new_x="LMARGIN", new_y="NEXT")
    if doc.unapproved:
        pdf.set_font("Helvetica", "B", 11)
        pdf.set_text_color(176, 0, 32)
        pdf.set_draw_color(176, 0, 32)
        pdf.multi_cell(0, 8, latin1(doc.unapproved), border=1, align="C",
                       new_x="LMARGIN", new_y="NEXT")  # fmt: skip
        pdf.set_text_color(0, 0, 0)
        pdf.set_draw_color(0, 0, 0)
        pdf.ln(2)
    pdf.set_font("Helvetica", "", 10)
    if quote.get("title"):
        pdf.multi_cell(0, 6, latin1(quote.get("title")), new_x="LMARGIN", new_y="NEXT")
    facts = [
        ("Account", doc.names.get("account")),
        ("Opportunity", doc.names.get("opportunity")),
        ("Contact", doc.names.get("contact")),
        ("Prepared by", doc.owner_name),
        ("Valid until", quote.get("valid_until")),
        ("Currency", doc.currency),
        ("Status", quote.get("status")),
    ]
    for label, value in facts:
        if value:
            pdf.set_font("Helvetica", "B", 10)
            pdf.cell(32, 6, latin1(label))
            pdf.set_font("Helvetica", "", 10)
            pdf.cell(0, 6, latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    _table_head(pdf)
    pdf.set_font("Helvetica", "", 9)
    for line in doc.lines:
        if pdf.will_page_break(7):
            pdf.add_page()
            _table_head(pdf)
            pdf.set_font("Helvetica", "", 9)
        cells = (
            fit(pdf, latin1(doc.product(line)), COLUMNS[0][1] - 2),
            number(line.get("quantity")),
            money(line.get("unit_price")),
            number(line.get("discount_percent")),
            number(line.get("tax_rate")),
            money(line.get("line_total")),
        )
        for (_, width), text in zip(COLUMNS, cells, strict=True):
            pdf.cell(width, 7, text, border="B", align="L" if width == 70 else "R")
        pdf.ln()
    pdf.ln(3)
    for label, key in (
        ("Subtotal", "subtotal"),
        ("Discount", "discount_total"),
        ("Tax", "tax_total"),
        ("Total", "total"),
    ):
        bold = key == "total"
        pdf.set_font("Helvetica", "B" if bold else "", 11 if bold else 10)
        pdf.cell(148, 7, label, align="R")
        pdf.cell(42, 7, latin1(f"{money(quote.get(key)) or '0.00'} {doc.currency}"), align="R",
                 new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    if quote.get("terms"):
        pdf.ln(6)
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 6, "Terms", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(0, 5, latin1(quote.get("terms")), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _table_head(pdf: FPDF) -> None:
    pdf.set_font("Helvetica", "B", 9)
    for label, width in COLUMNS:
        pdf.cell(width, 7, label, border="B", align="L" if width == 70 else "R")
    pdf.ln()
