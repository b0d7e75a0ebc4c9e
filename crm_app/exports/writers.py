"""File writers for exports: rows in, one file out, in constant memory.

Each writer takes the rows one at a time (`write_row`) and finishes the file on
`close()`. None of them keeps the rows: CSV writes through, openpyxl's write-only
workbook streams its sheet to a temporary file, and the PDF draws a page as soon as
it has a page of rows (the total is known before the first row, so "Page N of M"
needs no second pass).
"""

import csv
import io
import logging
import math
from copy import copy
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}

WIRE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The same look in a spreadsheet: a real date and time, shown as the lists write it.
XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"

# What the writers print around the rows, in the export's language.
LABELS = {
    "generated_at": {"en": "Generated at", "zh-CN": "生成时间", "zh-TW": "生成時間"},
    "filters": {"en": "Filters", "zh-CN": "筛选条件", "zh-TW": "篩選條件"},
    "no_filters": {"en": "none (every row in scope)", "zh-CN": "无（全部记录）", "zh-TW": "無（全部記錄）"},
    "rows": {"en": "Rows", "zh-CN": "行数", "zh-TW": "行數"},
    "no_rows": {"en": "No rows match these filters.", "zh-CN": "没有符合条件的记录。", "zh-TW": "沒有符合條件的記錄。"},
    "report": {"en": "Report", "zh-CN": "报表", "zh-TW": "報表"},
    "broker": {"en": "Broker", "zh-CN": "经纪商", "zh-TW": "經紀商"},
    "about": {"en": "About", "zh-CN": "说明", "zh-TW": "說明"},
}

PAGE_LABEL = {
    "en": "Page {page} of {pages}",
    "zh-CN": "第 {page} 页，共 {pages} 页",
    "zh-TW": "第 {page} 頁，共 {pages} 頁",
}


def label(key, language):
    texts = LABELS[key]
    return texts.get(language) or texts["en"]


@dataclass
class ExportDocument:
    """Everything a writer prints besides the rows."""

    title: str
    headers: list
    language: str = "en"
    widths: list = field(default_factory=list)  # relative column widths (PDF, XLSX)
    aligns: list = field(default_factory=list)  # "left" or "right" per column (PDF)
    zone: object = timezone.utc
    generated_at: datetime | None = None  # aware, in `zone`
    broker_name: str = ""
    logo: bytes | None = None
    filters: list = field(default_factory=list)  # [(label, text)]
    rows_total: int = 0
    # Per column: ("text", None), ("time", None) or ("number", places): how a cell is shown.
    kinds: list = field(default_factory=list)

    def __post_init__(self):
        count = len(self.headers)
        self.widths = list(self.widths) or [1.0] * count
        self.aligns = list(self.aligns) or ["left"] * count
        self.kinds = list(self.kinds) or [("text", None)] * count
        if self.generated_at is None:
            self.generated_at = datetime.now(self.zone)

    @property
    def generated_text(self):
        return f"{self.generated_at.strftime(WIRE_TIME_FORMAT)} ({self.generated_at.tzname() or self.zone})"

    @property
    def filters_text(self):
        if not self.filters:
            return label("no_filters", self.language)
        return "; ".join(f"{name}: {value}" for name, value in self.filters)


def local_time(value, zone):
    """Naive UTC (how the database keeps times) to the broker's wall clock, naive."""
    return value.replace(tzinfo=timezone.utc).astimezone(zone).replace(tzinfo=None)


def text_of(value, zone):
    """A cell as text, the way the list routes put it on the wire."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return local_time(value, zone).strftime(WIRE_TIME_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_utc(zone):
    return zone is timezone.utc or getattr(zone, "key", None) in ("UTC", "Etc/UTC")


def text_converters(zone):
    """`text_of` by exact type, one dictionary look-up a cell: a million-row export
    spends most of its Python time here."""
    if is_utc(zone):

        def time_text(value):
            return value.isoformat(" ", "seconds")
    else:

        def time_text(value):
            return value.replace(tzinfo=timezone.utc).astimezone(zone).replace(tzinfo=None).isoformat(" ", "seconds")

    return {
        str: str,
        type(None): lambda value: "",
        int: int.__str__,
        Decimal: lambda value: format(value, "f"),
        datetime: time_text,
        date: date.isoformat,
        bool: lambda value: "true" if value else "false",
    }


def fixed_number(value, places):
    """A number to `places` decimals, rounded half away from zero, as the lists' fields and
    PostgreSQL's round() do (SQLite hands back floats: "250.0000000000" must read "250.00")."""
    if isinstance(value, float):
        value = Decimal(repr(value))
    return Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP) + 0  # + 0: no -0.00


def fixed_text_converter(places, fallback):
    def fixed_text(value):
        if value is None:
            return ""
        if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
            return f"{fixed_number(value, places):.{places}f}"
        return fallback(value)

    return fixed_text


def cells_by_type(converters, other):
    def by_type(value):
        return converters.get(type(value), other)(value)

    return by_type


def column_converters(document, converters, other):
    """One text converter per column: a number column writes its places whatever the database
    handed back; any other cell goes by its type (`converters`, else `other`)."""

    by_type = cells_by_type(converters, other)
    return [
        fixed_text_converter(places, by_type) if kind == "number" and places is not None else by_type
        for kind, places in document.kinds
    ]


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(text):
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class CsvWriter:
    """UTF-8 with a byte-order mark, so Excel shows Chinese text as Chinese."""

    extension = "csv"

    def __init__(self, path, document, line_end="\r\n"):
        self.zone = document.zone
        self.converters = text_converters(document.zone)
        # Text from people (remarks, names) must not run as a formula; numbers and
        # times are never text here, so "-5.00" stays a negative amount.
        self.converters[str] = formula_safe
        self.cells = column_converters(document, self.converters, self._other)
        self.file = open(path, "w", encoding="utf-8-sig", newline="")  # closed in close()
        # "\n" when PostgreSQL's COPY writes the rows, so the header ends as they do.
        self.writer = csv.writer(self.file, lineterminator=line_end)
        self.writer.writerow(document.headers)

    def write_row(self, values):
        cells = self.cells
        if len(values) > len(cells):  # cells past the headers: written by their type
            cells = self.cells = cells + [cells_by_type(self.converters, self._other)] * (len(values) - len(cells))
        self.writer.writerow([convert(value) for convert, value in zip(cells, values, strict=False)])

    def _other(self, value):
        if isinstance(value, str):
            return formula_safe(str(value))
        return text_of(value, self.zone)

    def csv_bytes_sink(self):
        """Where rows already written as UTF-8 CSV (by PostgreSQL's COPY) go, after the
        header: a plain `write(bytes)`, called once a row."""
        self.file.flush()
        return self.file.buffer.write

    def close(self):
        self.file.close()


class XlsxWriter:
    """openpyxl's write-only workbook: each row goes to a temporary file as it comes.

    Numbers are number cells rounded to the list's places, with a `0.00`-style format;
    times are date cells in the broker's time zone, shown `yyyy-mm-dd hh:mm:ss`.
    """

    extension = "xlsx"

    def __init__(self, path, document):
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        self.path = path
        self.document = document
        self.zone = document.zone
        self.cell_class = WriteOnlyCell
        self.illegal = ILLEGAL_CHARACTERS_RE
        self.workbook = Workbook(write_only=True)
        self.sheet = self.workbook.create_sheet(sheet_title(document.title))
        for index, (weight, (kind, _)) in enumerate(zip(document.widths, document.kinds, strict=True), 1):
            width = 20 if kind == "time" else max(8, round(14 * weight))
            self.sheet.column_dimensions[get_column_letter(index)].width = width
        self.sheet.freeze_panes = "A2"
        bold = Font(bold=True)
        header = []
        for text in document.headers:
            cell = WriteOnlyCell(self.sheet, value=self._clean(text))
            cell.font = bold
            header.append(cell)
        self.sheet.append(header)
        # A styled cell per format, copied for each cell (setting a format by name costs a look-up).
        self.time_style = self._style_of(XLSX_TIME_FORMAT)
        self.cells = [self._column_cell(kind, places) for kind, places in document.kinds]

    def _style_of(self, number_format):
        template = self.cell_class(self.sheet)
        template.number_format = number_format
        return template._style

    def _styled(self, value, style):
        cell = self.cell_class(self.sheet, value=value)
        cell._style = copy(style)
        return cell

    def _column_cell(self, kind, places):
        if kind == "number" and places is not None:
            style = self._style_of("0." + "0" * places if places else "0")

            def number_cell(value):
                if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
                    return self._styled(fixed_number(value, places), style)
                return self._cell(value)

            return number_cell
        return self._cell

    def _clean(self, text):
        return self.illegal.sub("", text)

    def _cell(self, value):
        if isinstance(value, datetime):
            return self._styled(local_time(value, self.zone), self.time_style)
        if isinstance(value, str):
            text = self._clean(value)
            if text.startswith("="):
                # Kept as the text it is: openpyxl would store it as a formula.
                cell = self.cell_class(self.sheet, value=text)
                cell.data_type = "s"
                return cell
            return text
        return value

    def write_row(self, values):
        cells = self.cells
        if len(values) > len(cells):  # cells past the headers: written by their type
            cells = self.cells = cells + [self._cell] * (len(values) - len(cells))
        self.sheet.append([convert(value) for convert, value in zip(cells, values, strict=False)])

    def close(self):
        about = self.workbook.create_sheet(label("about", self.document.language))
        about.column_dimensions["A"].width = 18
        about.column_dimensions["B"].width = 80
        language = self.document.language
        for name, value in (
            (label("broker", language), self.document.broker_name),
            (label("report", language), self.document.title),
            (label("generated_at", language), self.document.generated_text),
            (label("rows", language), self.document.rows_total),
        ):
            about.append([name, self._cell(str(value))])
        about.append([label("filters", language), self._cell(self.document.filters_text)])
        self.workbook.save(self.path)


def sheet_title(title):
    """Excel's sheet-name rules: at most 31 characters, none of []:*?/\\."""
    cleaned = "".join(" " if ch in "[]:*?/\\" else ch for ch in title).strip()
    return (cleaned or "Export")[:31]


# PDF ----------------------------------------------------------------------------------

# The PDF's one font, embedded (a subset of the glyphs used): WenQuanYi Micro Hei, a TrueType
# font (glyf outlines, which reportlab can embed) with Latin, simplified and traditional Chinese,
# shipped by the `paperang-p2-fonts-cjk` package. reportlab's built-in CID fonts are never embedded:
# a viewer without Adobe's Chinese language pack draws nothing.
PDF_FONT = "WenQuanYiMicroHei"
PDF_FONT_PACKAGE = "paperang_p2_fonts_cjk"
PDF_FONT_FILE = "fonts/wqy-microhei.ttc"
_font_registered = False


def pdf_font_path():
    from importlib.resources import files

    return str(files(PDF_FONT_PACKAGE).joinpath(PDF_FONT_FILE))


def register_pdf_font():
    """The embedded TrueType font every string of the PDF is set in."""
    global _font_registered
    if not _font_registered:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        pdfmetrics.registerFont(TTFont(PDF_FONT, pdf_font_path(), subfontIndex=0))
        _font_registered = True
    return PDF_FONT


class PdfWriter:
    """A branded, paginated table: reportlab platypus flowables drawn page by page.

    Every row is one line (longer text is cut with an ellipsis), so the number of
    rows on a page, and from the known total the number of pages, is fixed before
    the first row arrives. Each page's table starts with the header row.
    """

    extension = "pdf"
    MARGIN = 28
    FONT_SIZE = 7
    ROW_HEIGHT = 12
    HEADER_HEIGHT = 15
    FOOTER_HEIGHT = 16
    RUNNING_HEADER_HEIGHT = 16
    LOGO_MAX = (140, 42)
    CELL_PADDING = 3

    def __init__(self, path, document):
        from reportlab.lib import colors
        from reportlab.lib.pagesizes import A4, landscape
        from reportlab.pdfgen.canvas import Canvas

        self.font = register_pdf_font()
        self.document = document
        self.zone = document.zone
        self.language = document.language
        self.converters = text_converters(document.zone)
        self.cells = column_converters(document, self.converters, self._other)
        # Numbers and times are shown whole (their columns are made wide enough); text is cut.
        self.cut = [kind == "text" for kind, _ in document.kinds]
        self.page_width, self.page_height = landscape(A4)
        self.content_width = self.page_width - 2 * self.MARGIN
        self.canvas = Canvas(
            path,
            pagesize=(self.page_width, self.page_height),
            pageCompression=1,
            # Not reportlab's Helvetica, which would be the one font left unembedded.
            initialFontName=self.font,
            initialFontSize=self.FONT_SIZE,
        )
        title = f"{document.broker_name} - {document.title}" if document.broker_name else document.title
        self.canvas.setTitle(title)
        self.canvas.setAuthor(document.broker_name or "")
        self.canvas.setSubject(document.filters_text)
        self.canvas.setCreator("forex-broker-crm exports")

        self.col_widths = self._column_widths()
        self.headers = [self._fit(text, width) for text, width in zip(document.headers, self.col_widths, strict=True)]
        self.logo = self._logo_image(document.logo)
        self.first_block, first_block_height = self._first_page_block()

        table_top_first = self.page_height - self.MARGIN - first_block_height - 8
        table_top_other = self.page_height - self.MARGIN - self.RUNNING_HEADER_HEIGHT
        bottom = self.MARGIN + self.FOOTER_HEIGHT
        self.table_tops = (table_top_first, table_top_other)
        self.capacity_first = max(1, int((table_top_first - bottom - self.HEADER_HEIGHT) // self.ROW_HEIGHT))
        self.capacity_other = max(1, int((table_top_other - bottom - self.HEADER_HEIGHT) // self.ROW_HEIGHT))
        self.total_pages = self.pages_for(document.rows_total)

        style = [
            ("FONT", (0, 0), (-1, -1), self.font, self.FONT_SIZE),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e3e8ef")),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f8fa")]),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#9aa5b1")),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("LEFTPADDING", (0, 0), (-1, -1), self.CELL_PADDING),
            ("RIGHTPADDING", (0, 0), (-1, -1), self.CELL_PADDING),
            ("TOPPADDING", (0, 0), (-1, -1), 1),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ]
        for index, align in enumerate(document.aligns):
            if align == "right":
                style.append(("ALIGN", (index, 0), (index, -1), "RIGHT"))
        self.table_style = style
        self.page = 0
        self.rows = []

    def _least_width(self, header, kind, places):
        """What a column needs: its header whole, and a time or a number read whole (a time is
        always 19 characters; a price gets five digits before the point, an amount seven: a
        longer one overflows its cell a little rather than being cut)."""
        from reportlab.pdfbase.pdfmetrics import stringWidth

        samples = [header]
        if kind == "time":
            samples.append("0000-00-00 00:00:00")
        elif kind == "number":
            digits = 5 if places and places > 2 else 7
            samples.append("-" + "0" * digits + ("." + "0" * places if places else ""))
        widest = max(stringWidth(sample, self.font, self.FONT_SIZE) for sample in samples)
        return widest + 2 * self.CELL_PADDING + 1

    def _column_widths(self):
        """The page's width shared by the columns' weights, times and numbers given their
        least width first (a column below it is fixed there, the rest is shared again)."""
        weights = list(self.document.widths)
        least = [
            self._least_width(header, kind, places)
            for header, (kind, places) in zip(self.document.headers, self.document.kinds, strict=True)
        ]
        widths = [None] * len(weights)
        while True:
            free = [i for i, width in enumerate(widths) if width is None]
            room = self.content_width - sum(width for width in widths if width is not None)
            total = sum(weights[i] for i in free) or 1
            short = [i for i in free if room * weights[i] / total < least[i]]
            if not short or room <= 0:
                break
            for i in short:
                widths[i] = least[i]
        room = max(0, self.content_width - sum(width for width in widths if width is not None))
        total = sum(weights[i] for i, width in enumerate(widths) if width is None) or 1
        widths = [room * weights[i] / total if width is None else width for i, width in enumerate(widths)]
        used = sum(widths)
        if used > self.content_width:  # too many columns for the page: everything shrinks alike
            widths = [width * self.content_width / used for width in widths]
        return widths

    def pages_for(self, rows_total):
        if rows_total <= self.capacity_first:
            return 1
        return 1 + math.ceil((rows_total - self.capacity_first) / self.capacity_other)

    # Pieces of a page --------------------------------------------------------------

    def _style(self, size, leading=None):
        from reportlab.lib.styles import ParagraphStyle

        return ParagraphStyle(
            f"export-{size}", fontName=self.font, fontSize=size, leading=leading or size * 1.3, wordWrap="CJK"
        )

    def _logo_image(self, data):
        """The broker's logo, or None when it is missing or not an image we can draw."""
        if not data:
            return None
        try:
            from reportlab.lib.utils import ImageReader

            image = ImageReader(io.BytesIO(data))
            width, height = image.getSize()
            scale = min(self.LOGO_MAX[0] / width, self.LOGO_MAX[1] / height, 1)
            return image, width * scale, height * scale
        except Exception:  # noqa: BLE001 - a broken logo must not cost the export
            log.warning("broker logo is not a usable image; the PDF goes without it")
            return None

    def _first_page_block(self):
        from reportlab.platypus import Paragraph

        document = self.document
        text_width = self.content_width - (self.logo[1] + 12 if self.logo else 0)
        language = self.language
        parts = []
        if document.broker_name:
            parts.append(Paragraph(escape(document.broker_name), self._style(14)))
        parts.append(Paragraph(escape(document.title), self._style(11)))
        parts.append(
            Paragraph(
                escape(
                    f"{label('generated_at', language)}: {document.generated_text}    "
                    f"{label('rows', language)}: {document.rows_total}"
                ),
                self._style(8),
            )
        )
        parts.append(
            Paragraph(escape(f"{label('filters', language)}: {document.filters_text}"), self._style(8)),
        )
        height = 0
        placed = []
        for paragraph in parts:
            _, h = paragraph.wrap(text_width, self.page_height)
            placed.append((paragraph, h))
            height += h + 2
        if self.logo:
            height = max(height, self.logo[2])
        return placed, height

    def _fit(self, text, width):
        """One line: text cut with an ellipsis to the column's width."""
        from reportlab.pdfbase.pdfmetrics import stringWidth

        room = width - 2 * self.CELL_PADDING
        text = text.replace("\r", " ").replace("\n", " ")
        if stringWidth(text, self.font, self.FONT_SIZE) <= room:
            return text
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if stringWidth(text[:middle] + "…", self.font, self.FONT_SIZE) <= room:
                low = middle
            else:
                high = middle - 1
        return text[:low] + "…"

    def _other(self, value):
        return text_of(value, self.zone)

    def _capacity(self):
        return self.capacity_first if self.page == 0 else self.capacity_other

    def write_row(self, values):
        self.rows.append(
            [
                self._fit(convert(value), width) if cut else convert(value)
                for convert, value, width, cut in zip(self.cells, values, self.col_widths, self.cut, strict=True)
            ]
        )
        if len(self.rows) >= self._capacity():
            self._draw_page()

    def _draw_page(self):
        from reportlab.platypus import Table

        c = self.canvas
        first = self.page == 0
        self.page += 1
        pages = max(self.total_pages, self.page)
        c.setFillColorRGB(0, 0, 0)
        if first:
            top = self.page_height - self.MARGIN
            if self.logo:
                image, width, height = self.logo
                try:
                    c.drawImage(image, self.page_width - self.MARGIN - width, top - height, width, height, mask="auto")
                except Exception:  # noqa: BLE001 - a broken logo must not cost the export
                    log.warning("broker logo could not be drawn; the PDF goes without it")
            y = top
            for paragraph, height in self.first_block:
                paragraph.drawOn(c, self.MARGIN, y - height)
                y -= height + 2
            table_top = self.table_tops[0]
        else:
            c.setFont(self.font, 8)
            running = " - ".join(part for part in (self.document.broker_name, self.document.title) if part)
            c.drawString(self.MARGIN, self.page_height - self.MARGIN - 9, running)
            c.drawRightString(
                self.page_width - self.MARGIN, self.page_height - self.MARGIN - 9, self.document.generated_text
            )
            table_top = self.table_tops[1]

        data = [self.headers, *self.rows]
        table = Table(
            data,
            colWidths=self.col_widths,
            rowHeights=[self.HEADER_HEIGHT] + [self.ROW_HEIGHT] * len(self.rows),
            repeatRows=1,
            style=self.table_style,
        )
        _, height = table.wrapOn(c, self.content_width, table_top)
        table.drawOn(c, self.MARGIN, table_top - height)
        if not self.rows:
            c.setFont(self.font, 9)
            c.drawString(self.MARGIN, table_top - height - 16, label("no_rows", self.language))

        c.setFont(self.font, 8)
        c.drawCentredString(
            self.page_width / 2,
            self.MARGIN,
            PAGE_LABEL.get(self.language, PAGE_LABEL["en"]).format(page=self.page, pages=pages),
        )
        c.showPage()
        self.rows = []

    def close(self):
        if self.rows or self.page == 0:
            self._draw_page()
        self.canvas.save()


WRITERS = {"csv": CsvWriter, "xlsx": XlsxWriter, "pdf": PdfWriter}


def open_writer(export_format, path, document, **options):
    return WRITERS[export_format](path, document, **options)
