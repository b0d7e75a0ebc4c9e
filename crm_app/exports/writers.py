"""File writers for exports: rows in, one file out, in constant memory.

Each writer takes the rows one at a time (`write_row`) and finishes the file on
`close()`. None of them keeps the rows: CSV writes through, openpyxl's write-only
workbook streams its sheet to a temporary file. The PDF (capped in rows) keeps its
rows' text until the end: each column is as wide as its longest value needs.
"""

import csv
import io
import logging
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
    # Per column: ("text", None), ("id", None), ("time", None) or ("number", places): how a cell
    # is shown. An id (order number, login, ticket) is text that is never cut nor wrapped.
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
    """Naive UTC (how the database keeps times) to the broker's wall clock, naive, in whole
    seconds as the lists show it (a spreadsheet would round 11:34:51.824 up to 11:34:52)."""
    return value.replace(tzinfo=timezone.utc, microsecond=0).astimezone(zone).replace(tzinfo=None)


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
    """A branded, paginated table: reportlab platypus tables drawn page by page.

    Nothing is ever cut. The rows are kept until `close()` (a PDF is capped at
    `EXPORT_PDF_MAX_ROWS`), then each column gets the width its longest value needs,
    measured with the font; when the columns do not fit the landscape page the font gets
    smaller, then names and other free text wrap inside their cells. Identifiers,
    numbers and times always stay on one line, whole. The pages are laid out before
    the first is drawn, so "Page N of M" is exact.
    """

    extension = "pdf"
    MARGIN = 28
    FONT_SIZE = 7
    # The font sizes tried before any text wraps; below the last, only when even the
    # one-line columns (identifiers, numbers, times) need it.
    FONT_SIZES = (7, 6.5, 6)
    SMALLEST_FONT_SIZE = 3
    LEADING = 1.3
    FOOTER_HEIGHT = 16
    RUNNING_HEADER_HEIGHT = 16
    LOGO_MAX = (140, 42)
    CELL_PADDING = 3
    # A wrapped column is never narrower than this many em (a couple of characters a line).
    WRAP_MIN_EMS = 4

    def __init__(self, path, document):
        from reportlab.lib.pagesizes import A4, landscape
        from reportlab.pdfgen.canvas import Canvas

        self.font = register_pdf_font()
        self.document = document
        self.zone = document.zone
        self.language = document.language
        self.converters = text_converters(document.zone)
        self.cells = column_converters(document, self.converters, self._other)
        # Free text (names, remarks, statuses) may wrap as a last resort; everything else
        # (identifiers, numbers, times) stays on one line.
        self.wraps = [kind == "text" for kind, _ in document.kinds]
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

        self.logo = self._logo_image(document.logo)
        self.first_block, first_block_height = self._first_page_block()
        table_top_first = self.page_height - self.MARGIN - first_block_height - 8
        table_top_other = self.page_height - self.MARGIN - self.RUNNING_HEADER_HEIGHT
        self.table_tops = (table_top_first, table_top_other)
        self.bottom = self.MARGIN + self.FOOTER_HEIGHT
        self.page = 0
        self.rows = []
        # The widest value of each column at font size 1 (widths grow with the size).
        self.widest = [0.0] * len(document.headers)

    # Measuring and laying out -------------------------------------------------------

    def _unit_width(self, text):
        from reportlab.pdfbase.pdfmetrics import stringWidth

        return stringWidth(text, self.font, 1)

    def _padding(self):
        return 2 * self.CELL_PADDING + 1

    def _header_widths(self):
        """Per column, at size 1: the header on one line, and its widest word (a wrapped header)."""
        whole, word = [], []
        for text in self.document.headers:
            whole.append(self._unit_width(text))
            word.append(max((self._unit_width(part) for part in text.split()), default=0.0))
        return whole, word

    def _share(self, least, most, weights, room):
        """`room` shared by weight between columns, each between its least and most width."""
        widths = [None] * len(least)
        while True:
            free = [i for i, width in enumerate(widths) if width is None]
            if not free:
                return widths
            left = room - sum(width for width in widths if width is not None)
            total = sum(weights[i] for i in free) or 1
            fixed = False
            for i in free:
                share = left * weights[i] / total
                if share < least[i]:
                    widths[i], fixed = least[i], True
                elif share > most[i]:
                    widths[i], fixed = most[i], True
            if not fixed:
                for i in free:
                    widths[i] = left * weights[i] / total
                return widths

    def _layout(self):
        """(font size, column widths): the largest size at which every column is whole on one
        line; else the smallest of FONT_SIZES with free text wrapped; else smaller still, until
        the one-line columns fit."""
        pad = self._padding()
        whole, word = self._header_widths()
        weights = list(self.document.widths)
        count = len(weights)
        for size in self.FONT_SIZES:
            natural = [max(self.widest[i], whole[i]) * size + pad for i in range(count)]
            if sum(natural) <= self.content_width:
                extra = self.content_width - sum(natural)
                total = sum(weights) or 1
                return size, [natural[i] + extra * weights[i] / total for i in range(count)]
        size = self.FONT_SIZES[-1]
        while True:
            one_line = [max(self.widest[i], word[i]) * size + pad for i in range(count)]
            least = [
                max(word[i], min(self.widest[i], self.WRAP_MIN_EMS)) * size + pad if self.wraps[i] else one_line[i]
                for i in range(count)
            ]
            if sum(least) <= self.content_width or size <= self.SMALLEST_FONT_SIZE:
                break
            size = max(self.SMALLEST_FONT_SIZE, size * self.content_width / sum(least) * 0.98)
        return size, self._share(least, one_line, weights, max(self.content_width, sum(least)))

    def _style(self, size, leading=None):
        from reportlab.lib.styles import ParagraphStyle

        return ParagraphStyle(
            f"export-{size}", fontName=self.font, fontSize=size, leading=leading or size * 1.3, wordWrap="CJK"
        )

    def _laid_out_row(self, texts, widths, size, style, header=False):
        """(cells, height): a cell that fits its width is a string, one that does not a
        Paragraph that wraps (free text and headers only; the layout keeps the rest whole)."""
        from reportlab.pdfbase.pdfmetrics import stringWidth
        from reportlab.platypus import Paragraph

        line = size * self.LEADING
        height = line
        cells = []
        for text, width, wraps in zip(texts, widths, self.wraps, strict=True):
            room = width - 2 * self.CELL_PADDING
            if (wraps or header) and text and stringWidth(text, self.font, size) > room:
                paragraph = Paragraph(escape(text), style)
                _, needed = paragraph.wrap(room, self.page_height)
                height = max(height, needed)
                cells.append(paragraph)
            else:
                cells.append(text)
        return cells, height + 3 + (2 if header else 0)

    # Pieces of a page --------------------------------------------------------------

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

    def _other(self, value):
        return text_of(value, self.zone)

    def write_row(self, values):
        row = [
            convert(value).replace("\r", " ").replace("\n", " ")
            for convert, value in zip(self.cells, values, strict=True)
        ]
        widest = self.widest
        for index, text in enumerate(row):
            if text:
                width = self._unit_width(text)
                if width > widest[index]:
                    widest[index] = width
        self.rows.append(row)

    def _table_style(self, size):
        from reportlab.lib import colors

        style = [
            ("FONT", (0, 0), (-1, -1), self.font, size),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e3e8ef")),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f8fa")]),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#9aa5b1")),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("LEFTPADDING", (0, 0), (-1, -1), self.CELL_PADDING),
            ("RIGHTPADDING", (0, 0), (-1, -1), self.CELL_PADDING),
            ("TOPPADDING", (0, 0), (-1, -1), 1),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ]
        for index, align in enumerate(self.document.aligns):
            if align == "right":
                style.append(("ALIGN", (index, 0), (index, -1), "RIGHT"))
        return style

    def close(self):
        size, widths = self._layout()
        style = self._style(size, size * self.LEADING)
        header, header_height = self._laid_out_row(self.document.headers, widths, size, style, header=True)
        # The pages, laid out before the first is drawn: the total is known for "Page N of M".
        pages, page, used = [], [], header_height
        for texts in self.rows:
            cells, height = self._laid_out_row(texts, widths, size, style)
            room = self.table_tops[0 if not pages else 1] - self.bottom
            if page and used + height > room:
                pages.append(page)
                page, used = [], header_height
            page.append((cells, height))
            used += height
        pages.append(page)
        self.rows = []
        table_style = self._table_style(size)
        for rows in pages:
            self._draw_page(header, header_height, rows, widths, table_style, len(pages))
        self.canvas.save()

    def _draw_page(self, header, header_height, rows, widths, table_style, pages):
        from reportlab.platypus import Table

        c = self.canvas
        first = self.page == 0
        self.page += 1
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

        table = Table(
            [header, *(cells for cells, _ in rows)],
            colWidths=widths,
            rowHeights=[header_height] + [height for _, height in rows],
            repeatRows=1,
            style=table_style,
        )
        _, height = table.wrapOn(c, self.content_width, table_top)
        table.drawOn(c, self.MARGIN, table_top - height)
        if not rows:
            c.setFont(self.font, 9)
            c.drawString(self.MARGIN, table_top - height - 16, label("no_rows", self.language))

        c.setFont(self.font, 8)
        c.drawCentredString(
            self.page_width / 2,
            self.MARGIN,
            PAGE_LABEL.get(self.language, PAGE_LABEL["en"]).format(page=self.page, pages=pages),
        )
        c.showPage()


WRITERS = {"csv": CsvWriter, "xlsx": XlsxWriter, "pdf": PdfWriter}


def open_writer(export_format, path, document, **options):
    return WRITERS[export_format](path, document, **options)
