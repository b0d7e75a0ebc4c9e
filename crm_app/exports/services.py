"""Exports: a registry of report sources, export jobs, signed download links, cleanup.

A report source says which rows a caller may export (a SQLAlchemy Select in the
caller's scope) and how a row becomes cells. `start_export` records an export job
and queues it on the `exports` queue; the worker streams the rows from a
server-side cursor into a file, keeps the progress in the database, and puts the
file in storage. The link handed out is signed for that one export and expires
with it, so a browser can follow it without a bearer token.
"""

import io
import logging
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import String, delete, func, select, text, update
from sqlalchemy import cast as sa_cast
from sqlalchemy.orm import aliased

from crm_app.common.errors import DomainError, NotFound, ServiceUnavailable, TooManyRequests, ValidationFailed
from crm_app.common.i18n import LANGUAGES, current_language
from crm_app.common.runtime import runtime
from crm_app.common.timeutil import utcnow
from crm_app.config import env_int
from crm_app.exports.models import EXPORT_FORMATS, ExportJob
from crm_app.exports.writers import (
    CONTENT_TYPES,
    WIRE_TIME_FORMAT,
    ExportDocument,
    is_utc,
    local_time,
    open_writer,
)
from crm_app.extensions import db

log = logging.getLogger(__name__)

# Settings (environment variables; the app config wins when it has them) -------------

DEFAULTS = {
    # How long a download link, and the file behind it, lives.
    "EXPORT_LINK_TTL_HOURS": 24,
    # A PDF keeps every page in memory until it is saved: past this many rows, CSV or XLSX.
    "EXPORT_PDF_MAX_ROWS": 20_000,
    # Exports one person may have queued or running at once (each can be a million rows).
    "EXPORT_MAX_ACTIVE_PER_USER": 5,
}
# The worker's hard limit for one export (RQ kills the job past it).
EXPORT_JOB_TIMEOUT_SECONDS = 3 * 3600
STREAM_BATCH_ROWS = 1000
# Excel's limit for a sheet, less the header row.
XLSX_MAX_ROWS = 1_048_575
# Progress is written at most this often: a person watches it, the database need not.
PROGRESS_EVERY_ROWS = 1000
PROGRESS_EVERY_SECONDS = 0.5
DOWNLOAD_SALT = "crm.exports.download-link"
EXPORT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,32}")
# pg_try_advisory_xact_lock(namespace, hash(export id)): one build of an export at a time.
LOCK_NAMESPACE = 0x45585054  # "EXPT"


def setting(name):
    value = current_app.config.get(name)
    if value is None:
        value = env_int(name, DEFAULTS[name])
    return int(value)


def link_ttl():
    return timedelta(hours=setting("EXPORT_LINK_TTL_HOURS"))


# Errors ---------------------------------------------------------------------------------

MESSAGES = {
    "export_link_invalid": (
        "This download link is not valid.",
        "下载链接无效。",
        "下載連結無效。",
    ),
    "export_link_expired": (
        "This download link has expired; export again.",
        "下载链接已过期，请重新导出。",
        "下載連結已過期，請重新匯出。",
    ),
    "export_failed": (
        "The export failed: {reason}",
        "导出失败：{reason}",
        "匯出失敗：{reason}",
    ),
    "too_many_exports": (
        "Too many exports are still being built; wait for one to finish.",
        "正在生成的导出过多，请等待完成后再试。",
        "正在產生的匯出過多，請等待完成後再試。",
    ),
    "export_queue_unavailable": (
        "Exports cannot be queued right now; try again later.",
        "暂时无法提交导出任务，请稍后再试。",
        "暫時無法提交匯出工作，請稍後再試。",
    ),
}


def message(code, **values):
    return MESSAGES[code][LANGUAGES.index(current_language())].format(**values)


class ExportLinkInvalid(DomainError):
    status = 403
    code = "export_link_invalid"


class ExportGone(DomainError):
    status = 410
    code = "export_link_expired"


class ExportFailed(DomainError):
    status = 409
    code = "export_failed"


class ExportError(Exception):
    """A report source or a writer refuses an export; the text is shown to the person."""


# The registry of report sources --------------------------------------------------------


COLUMN_KINDS = ("text", "id", "time", "number")


@dataclass(frozen=True)
class Column:
    """One column of a report: its key, its header in every language, its look."""

    key: str
    header_i18n: dict
    width: float = 1.0  # relative width in the PDF and the spreadsheet
    align: str = "left"  # "right" for amounts (PDF)
    # "text" (names, remarks: a PDF may wrap it as a last resort); "id" (order numbers, logins,
    # tickets: never cut nor wrapped); "time" (a naive-UTC datetime, shown in the broker's zone,
    # whole seconds); "number" (shown to `places` decimals as the list shows it, whatever type
    # the database hands back).
    kind: str = "text"
    places: int | None = None

    def __post_init__(self):
        if self.kind not in COLUMN_KINDS:
            raise ValueError(f"column {self.key!r}: kind is one of {', '.join(COLUMN_KINDS)}")
        if (self.kind == "number") != (self.places is not None):
            raise ValueError(f"column {self.key!r}: a number column, and only one, has places")

    def header(self, language):
        return self.header_i18n.get(language) or self.header_i18n["en"]


@dataclass(frozen=True)
class ReportSource:
    name: str
    columns: tuple
    query_for: object  # (user, filters) -> Select of the rows in the caller's scope
    row_to_values: object  # (row) -> list of values, one per column
    title_i18n: dict
    filter_labels: dict = field(default_factory=dict)  # {filter key: {en, zh-CN, zh-TW}}
    csv_by_copy: bool = False  # row_to_values returns the selected columns as they are
    count_for: object = None  # (user, filters) -> Select of the exact row count, when cheaper

    def title(self, language):
        return self.title_i18n.get(language) or self.title_i18n["en"]


REPORTS = {}


def _as_column(column):
    if isinstance(column, Column):
        return column
    if isinstance(column, dict):
        return Column(**column)
    key, header_i18n, *rest = column
    return Column(key, header_i18n, *rest)


def register_report(
    name, columns, query_for, row_to_values, title_i18n, filter_labels=None, csv_by_copy=False, count_for=None
):
    """Make a report exportable under `name`.

    - `columns`: `Column(key, {"en", "zh-CN", "zh-TW"}, width=1.0, align="left")`
      items (or `(key, header_i18n)` tuples), in the order of `row_to_values`.
    - `query_for(user, filters)`: a SQLAlchemy Select of the rows `user` may see with
      these filters (the same scope and order as the list route), without paging.
      It runs in the worker, inside one REPEATABLE READ transaction, streamed.
    - `row_to_values(row)`: the cells of one result row (a Row; `row[0]` for a select
      of one entity). Values: str, int, Decimal, bool, None, or naive-UTC datetime
      (written in the broker's timezone).
    - `title_i18n`: the report's title; `filter_labels`: how the PDF names each filter.
    - `csv_by_copy=True`: `row_to_values` is `list` (the Select's plain columns are the
      cells, in order; no DISTINCT). A CSV is then written by PostgreSQL's
      `COPY (...) TO STDOUT`, several times faster than row by row; times, text and
      booleans are formatted in SQL exactly as the writers do.
    - `count_for(user, filters)`: a Select of the same row count, cheaper than counting
      `query_for`'s rows (which may join tables for their columns only).
    """
    if name in REPORTS:
        raise ValueError(f"report {name!r} is already registered")
    columns = tuple(_as_column(column) for column in columns)
    for column in columns:
        if "en" not in column.header_i18n:
            raise ValueError(f"column {column.key!r} of report {name!r} needs an English header")
    if "en" not in title_i18n:
        raise ValueError(f"report {name!r} needs an English title")
    source = ReportSource(
        name,
        columns,
        query_for,
        row_to_values,
        dict(title_i18n),
        dict(filter_labels or {}),
        bool(csv_by_copy),
        count_for,
    )
    REPORTS[name] = source
    return source


def get_report(name):
    try:
        return REPORTS[name]
    except KeyError:
        raise ValueError(f"no report source named {name!r}") from None


# Filters as JSON: times and amounts keep their type on the way to the worker ------------


def encode_filters(value):
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dict):
        return {str(k): encode_filters(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [encode_filters(v) for v in value]
    return value


def decode_filters(value):
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, raw),) = value.items()
            if tag == "$datetime":
                return datetime.fromisoformat(raw)
            if tag == "$date":
                return date.fromisoformat(raw)
            if tag == "$decimal":
                return Decimal(raw)
        return {k: decode_filters(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_filters(v) for v in value]
    return value


# Paging belongs to the list; an export carries every row that matches the filters.
PAGING_KEYS = ("page", "size")


# Creating an export and its link ------------------------------------------------------


def new_export_id():
    return secrets.token_urlsafe(16)  # 22 characters, 128 random bits


def create_export(user, report_name, filters, export_format="csv", language=None):
    """Record the export, queue its job (job id = export id), and return the row."""
    from workers import enqueue
    from workers.exports import build_export

    get_report(report_name)
    if export_format not in EXPORT_FORMATS:
        raise ValidationFailed(errors={"format": [f"One of: {', '.join(EXPORT_FORMATS)}."]})
    now = utcnow()
    active = db.session.scalar(
        select(func.count())
        .select_from(ExportJob)
        .where(ExportJob.owner_id == user.id, ExportJob.status.in_(("queued", "running")), ExportJob.expires_at > now)
    )
    if active >= setting("EXPORT_MAX_ACTIVE_PER_USER"):
        refused = TooManyRequests(retry_after=30, code="too_many_exports")
        refused.message = message("too_many_exports")
        raise refused
    kept = {k: v for k, v in (filters or {}).items() if k not in PAGING_KEYS}
    export = ExportJob(
        id=new_export_id(),
        owner_id=user.id,
        report=report_name,
        filters=encode_filters(kept),
        format=export_format,
        language=language or current_language(),
        status="queued",
        rows_done=0,
        created_at=now,
        expires_at=now + link_ttl(),
    )
    db.session.add(export)
    db.session.commit()
    export_id = export.id
    try:
        enqueue(build_export, export_id, job_id=export_id, description=f"build_export {export_id}")
    except Exception:
        log.exception("export %s could not be queued", export_id)
        _update(export_id, status="failed", error="the export could not be queued", finished_at=utcnow())
        raise ServiceUnavailable(code="export_queue_unavailable", message=message("export_queue_unavailable")) from None
    return db.session.get(ExportJob, export_id)


def start_export(user, report_name, filters, export_format="csv"):
    """What a POST .../export view returns: `{"download_url": ...}` at once."""
    export = create_export(user, report_name, filters, export_format)
    return {"download_url": download_url(export)}


def _serializer():
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=DOWNLOAD_SALT)


def download_url(export):
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    return f"{base}/api/v1/exports/{export.id}/download?token={_serializer().dumps(export.id)}"


# Reading exports ------------------------------------------------------------------------


def get_visible_export(export_id, viewer):
    """The export if the viewer owns it or is an admin; otherwise it does not exist."""
    export = db.session.get(ExportJob, export_id) if EXPORT_ID_PATTERN.fullmatch(export_id or "") else None
    if export is None or (export.owner_id != viewer.id and viewer.user_type != "admin"):
        raise NotFound()
    return export


def export_for_download(export_id, token):
    """The export a signed link points at: refused when tampered (403) or expired (410)."""
    try:
        subject = _serializer().loads(token, max_age=int(link_ttl().total_seconds()))
    except SignatureExpired:
        raise ExportGone(message=message("export_link_expired")) from None
    except BadSignature:
        raise ExportLinkInvalid(message=message("export_link_invalid")) from None
    if subject != export_id:
        raise ExportLinkInvalid(message=message("export_link_invalid"))
    export = db.session.get(ExportJob, export_id)
    # A valid signature over a missing row: the cleanup removed it after it expired.
    if export is None or export.expires_at <= utcnow():
        raise ExportGone(message=message("export_link_expired"))
    if export.status == "failed":
        reason = export.error or "unknown"
        raise ExportFailed(message=message("export_failed", reason=reason), errors={"reason": [reason]})
    return export


def progress_of(export):
    return {
        "id": export.id,
        "status": export.status,
        "rows_done": export.rows_done,
        "rows_total": export.rows_total,
        "progress": export.progress,
    }


def open_export_file(export):
    try:
        return runtime().storage.open(export.storage_key)
    except FileNotFoundError:
        raise ExportGone(message=message("export_link_expired")) from None


# Building the file (the worker) --------------------------------------------------------


def _update(export_id, **values):
    """Write the export's state on a connection of its own, committed at once.

    The rows are streamed from a server-side cursor in the session's transaction,
    which must stay open: the progress cannot be committed through it.
    """
    with db.engine.begin() as connection:
        result = connection.execute(update(ExportJob.__table__).where(ExportJob.__table__.c.id == export_id), values)
        return result.rowcount


def _status_now(export_id):
    with db.engine.connect() as connection:
        return connection.scalar(select(ExportJob.__table__.c.status).where(ExportJob.__table__.c.id == export_id))


def _postgres():
    return db.engine.dialect.name == "postgresql"


def failure_reason(exc):
    from rq.timeouts import JobTimeoutException

    if isinstance(exc, JobTimeoutException):
        return f"the export took longer than {EXPORT_JOB_TIMEOUT_SECONDS} seconds"
    lines = str(exc).strip().splitlines()
    # The first line only: database errors carry the SQL and its parameters after it.
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()[:500]


def run_export(export_id):
    """Build the export's file once; a done export is left alone, a second run waits out."""
    session = db.session
    session.rollback()
    if _postgres():
        # One snapshot for the count and the rows: the total (and "Page N of M") is exact.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    try:
        export = session.get(ExportJob, export_id)
        if export is None:
            log.warning("export %s: no such export (removed?)", export_id)
            return None
        if export.status == "done":
            log.info("export %s is already built", export_id)
            return "done"
        if export.expires_at <= utcnow():
            log.info("export %s expired before a worker took it", export_id)
            return export.status
        if _postgres() and not session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:namespace, hashtext(:id))"),
            {"namespace": LOCK_NAMESPACE, "id": export_id},
        ):
            log.info("export %s is being built by another worker", export_id)
            return "running"
        if _status_now(export_id) == "done":  # finished between our snapshot and the lock
            return "done"
        return _build(session, export)
    finally:
        session.rollback()  # ends the snapshot and releases the lock


def _build(session, export):
    from crm_app.auth.models import User

    export_id = export.id
    _update(
        export_id, status="running", started_at=utcnow(), finished_at=None, rows_done=0, rows_total=None, error=None
    )
    log.info("export %s: building %s as %s", export_id, export.report, export.format)
    try:
        source = get_report(export.report)
        user = session.get(User, export.owner_id)
        filters = decode_filters(export.filters or {})
        query = source.query_for(user, filters)
        if source.count_for is not None:
            total = session.scalar(source.count_for(user, filters))
        else:
            total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
        _update(export_id, rows_total=total)
        if export.format == "pdf" and total > setting("EXPORT_PDF_MAX_ROWS"):
            raise ExportError(
                f"{total} rows is too many for a PDF (at most {setting('EXPORT_PDF_MAX_ROWS')}); "
                "export as CSV or XLSX, or narrow the filters"
            )
        if export.format == "xlsx" and total > XLSX_MAX_ROWS:
            raise ExportError(
                f"{total} rows is too many for one Excel sheet (at most {XLSX_MAX_ROWS}); "
                "export as CSV, or narrow the filters"
            )
        document = export_document(export, source, filters, total)
        key = f"exports/{export_id}.{export.format}"
        with tempfile.TemporaryDirectory(prefix="export-") as folder:
            path = os.path.join(folder, f"{export_id}.{export.format}")
            copyable = export.format == "csv" and source.csv_by_copy
            statement = copy_statement(session, query, document.zone) if copyable else None
            options = {"line_end": "\n"} if statement is not None else {}
            writer = open_writer(export.format, path, document, **options)
            if statement is not None:
                done = _copy_rows(session, statement, writer, export_id, total)
            else:
                done = _stream_rows(session, query, source, writer, export_id)
            writer.close()
            size = os.path.getsize(path)
            with open(path, "rb") as built:
                runtime().storage.save(key, built)
        finished = _update(
            export_id,
            status="done",
            rows_done=done,
            rows_total=done,
            storage_key=key,
            file_name=file_name(export),
            content_type=CONTENT_TYPES[export.format],
            file_size=size,
            finished_at=utcnow(),
        )
        if not finished:  # the row went (expired and cleaned up) while we wrote the file
            runtime().storage.delete(key)
        log.info("export %s: %s rows, %s bytes", export_id, done, size)
        return "done"
    except ExportError as exc:
        session.rollback()
        _update(export_id, status="failed", error=str(exc)[:2000], finished_at=utcnow())
        log.info("export %s refused: %s", export_id, exc)
        return "failed"
    except Exception as exc:
        session.rollback()
        _update(export_id, status="failed", error=failure_reason(exc), finished_at=utcnow())
        log.exception("export %s failed", export_id)
        raise


def _stream_rows(session, query, source, writer, export_id):
    result = session.execute(query.execution_options(yield_per=STREAM_BATCH_ROWS, stream_results=True))
    done = 0
    last_report = time.monotonic()
    try:
        for row in result:
            writer.write_row(source.row_to_values(row))
            done += 1
            if done % PROGRESS_EVERY_ROWS == 0 and time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
                _update(export_id, rows_done=done)
                last_report = time.monotonic()
    finally:
        result.close()
    return done


# Text that a spreadsheet would run as a formula (see writers.formula_safe).
FORMULA_PATTERN = "^[-=+@\t\r]"


def copy_statement(session, query, zone):
    """The Select with each column formatted in SQL as the CSV writer formats it, for
    COPY; None where COPY cannot give the same text (not PostgreSQL, an unknown type)."""
    import sqlalchemy as sa

    if not _postgres():
        return None
    zone_key = None if is_utc(zone) else getattr(zone, "key", None)
    if zone_key is None and not is_utc(zone):
        return None
    formatted = []
    for column in query.selected_columns:
        kind = column.type
        if isinstance(kind, sa.DateTime):
            if kind.timezone:
                local = func.timezone(zone_key or "UTC", column)
            else:
                local = column if zone_key is None else func.timezone(zone_key, func.timezone("UTC", column))
            formatted.append(func.to_char(local, "YYYY-MM-DD HH24:MI:SS"))
        elif isinstance(kind, sa.Date):
            formatted.append(func.to_char(column, "YYYY-MM-DD"))
        elif isinstance(kind, sa.Boolean):
            formatted.append(sa.case((column.is_(True), "true"), (column.is_(False), "false")))
        elif isinstance(kind, sa.String):
            formatted.append(
                sa.case((column.op("~")(FORMULA_PATTERN), sa.literal("'") + column), else_=column),
            )
        elif isinstance(kind, (sa.Integer, sa.Numeric)) and not isinstance(kind, sa.Float):
            formatted.append(column)
        else:
            return None
    if zone_key and not session.scalar(
        text("SELECT count(*) FROM pg_timezone_names WHERE name = :zone"), {"zone": zone_key}
    ):
        return None  # a zone Python knows and PostgreSQL does not
    return query.with_only_columns(*formatted, maintain_column_froms=True)


def _copy_rows(session, statement, writer, export_id, total):
    """PostgreSQL writes the CSV rows (`COPY ... TO STDOUT`) in the same snapshot as the count.

    The rows are drained straight from libpq (psycopg's public `pgconn`): going through
    `Copy.read()` costs a wait cycle per row, three times COPY's own time.
    """
    import psycopg
    from psycopg import pq

    compiled = statement.compile(dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True})
    driver = session.connection().connection.driver_connection
    pgconn = driver.pgconn
    write = writer.csv_bytes_sink()
    done = 0
    next_report = PROGRESS_EVERY_ROWS
    last_report = time.monotonic()
    with driver.cursor() as cursor:
        with cursor.copy(f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv)", compiled.params):
            while True:
                size, row = pgconn.get_copy_data(0)  # blocks for the next row; -1 at the end
                if size < 0:
                    break
                write(row)
                done += 1
                if done == next_report:
                    next_report += PROGRESS_EVERY_ROWS
                    if time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
                        _update(export_id, rows_done=min(done, total))
                        last_report = time.monotonic()
            if size == -2:
                raise psycopg.OperationalError(pgconn.get_error_message())
            # The COPY's own outcome (an error met on a later row arrives here), read to
            # the end so that the connection is idle again before anything is raised.
            results = []
            while (result := pgconn.get_result()) is not None:
                results.append(result)
            for result in results:
                if result.status != pq.ExecStatus.COMMAND_OK:
                    raise psycopg.DatabaseError(result.get_error_message())
    if done != total:
        log.warning("export %s: COPY sent %s rows, the count said %s", export_id, done, total)
    return total


def file_name(export):
    from crm_app.broker.services import broker_zone

    stamp = local_time(export.created_at, broker_zone()).strftime("%Y%m%d-%H%M")
    return f"{export.report}-{stamp}.{export.format}"


def export_document(export, source, filters, total):
    """What the file says besides its rows: title, headers, broker, time, filters."""
    from crm_app.broker.services import broker_zone, get_setting

    language = export.language if export.language in LANGUAGES else "en"
    broker = get_setting("broker")
    names = broker.get("broker_name_i18n") or {}
    zone = broker_zone()
    return ExportDocument(
        title=source.title(language),
        headers=[column.header(language) for column in source.columns],
        language=language,
        widths=[column.width for column in source.columns],
        aligns=[column.align for column in source.columns],
        kinds=[(column.kind, column.places) for column in source.columns],
        zone=zone,
        generated_at=datetime.now(timezone.utc).astimezone(zone),
        broker_name=names.get(language) or names.get("en") or "",
        logo=load_logo(broker.get("company_logo_url")) if export.format == "pdf" else None,
        filters=describe_filters(source, filters, language, zone),
        rows_total=total,
    )


def describe_filters(source, filters, language, zone):
    described = []
    for key, value in filters.items():
        if value is None or value == "" or value == []:
            continue
        labels = source.filter_labels.get(key) or {}
        name = labels.get(language) or labels.get("en") or key
        if isinstance(value, datetime):
            shown = local_time(value, zone).strftime(WIRE_TIME_FORMAT)
        elif isinstance(value, (list, tuple)):
            shown = ", ".join(str(v) for v in value)
        else:
            shown = str(value)
        described.append((name, shown[:200]))
    return described


LOGO_MAX_BYTES = 2 * 1024 * 1024
LOGO_TYPES = ("image/png", "image/jpeg")


def load_logo(url):
    """The broker's logo bytes, or None: a PDF without a logo beats no PDF.

    An upload of ours is read from storage (only an admin's upload: the setting must
    not pull a client's document into every PDF); an http(s) URL is fetched with a
    short timeout; anything else, or any failure, is skipped.
    """
    if not url:
        return None
    try:
        from crm_app.uploads.services import UPLOAD_URL_PATTERN

        local = UPLOAD_URL_PATTERN.search(url.split("?", 1)[0])
        if local:
            return _local_logo(local.group(1))
        if url.startswith(("http://", "https://")):
            return _remote_logo(url)
    except Exception:  # noqa: BLE001 - branding is best effort
        log.warning("broker logo %r could not be read; the PDF goes without it", url, exc_info=True)
    return None


def _local_logo(upload_id):
    from crm_app.auth.models import User
    from crm_app.uploads.models import Upload

    upload = db.session.get(Upload, upload_id)
    if upload is None or upload.content_type not in LOGO_TYPES or upload.size > LOGO_MAX_BYTES:
        return None
    owner = db.session.get(User, upload.owner_id)
    if owner is None or owner.user_type != "admin":
        return None
    with runtime().storage.open(upload.storage_key) as stored:
        return stored.read(LOGO_MAX_BYTES + 1)[:LOGO_MAX_BYTES]


def _remote_logo(url):
    import requests

    with requests.get(url, timeout=(2, 3), stream=True, allow_redirects=False) as response:
        if response.status_code != 200:
            return None
        if response.headers.get("Content-Type", "").split(";")[0].strip() not in LOGO_TYPES:
            return None
        data = io.BytesIO()
        for chunk in response.iter_content(64 * 1024):
            data.write(chunk)
            if data.tell() > LOGO_MAX_BYTES:
                return None
        return data.getvalue()


# Housekeeping ---------------------------------------------------------------------------


def remove_expired_exports(now=None, batch=500):
    """Delete the files, then the rows, of exports whose link has expired."""
    now = now or utcnow()
    storage = runtime().storage
    removed = 0
    while True:
        rows = db.session.execute(
            select(ExportJob.id, ExportJob.storage_key)
            .where(ExportJob.expires_at <= now)
            .order_by(ExportJob.expires_at)
            .limit(batch)
        ).all()
        gone = []
        for export_id, key in rows:
            try:
                if key:
                    storage.delete(key)
            except Exception:  # noqa: BLE001 - the row stays; the next run tries again
                log.exception("export %s: file %s could not be deleted", export_id, key)
                continue
            gone.append(export_id)
        if gone:
            db.session.execute(delete(ExportJob).where(ExportJob.id.in_(gone)))
        db.session.commit()
        removed += len(gone)
        if len(rows) < batch or not gone:
            return removed


def fail_stalled_exports(now=None):
    """A worker killed mid-export (out of memory, restarted) leaves it running: say so."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=EXPORT_JOB_TIMEOUT_SECONDS + 600)
    result = db.session.execute(
        update(ExportJob)
        .where(ExportJob.status == "running", ExportJob.started_at < cutoff)
        .values(
            status="failed",
            error="the worker stopped before the file was finished; export again",
            finished_at=now,
        )
    )
    db.session.commit()
    return result.rowcount


# The first report source: the caller's own internal transfers --------------------------
# (the back-office transfer report, scoped for IBs and admins, is registered by the
# reports package under "transfers"; this one is the client's own list, #43's rows.)


def own_transfers_query(user, filters):
    from crm_app.trading.models import TradingAccount
    from crm_app.transfers.models import Transfer

    source = aliased(TradingAccount)
    target = aliased(TradingAccount)
    query = (
        select(
            Transfer.order_number,
            Transfer.created_at,
            sa_cast(source.login, String).label("source_login"),
            sa_cast(target.login, String).label("target_login"),
            Transfer.amount,
            Transfer.currency,
            Transfer.status,
            Transfer.remark,
        )
        .join(source, source.id == Transfer.source_account_id)
        .join(target, target.id == Transfer.target_account_id)
        .where(Transfer.user_id == user.id)
    )
    if filters.get("start_time"):
        query = query.where(Transfer.created_at >= filters["start_time"])
    if filters.get("end_time"):
        query = query.where(Transfer.created_at <= filters["end_time"])
    # The list route's order: newest first.
    return query.order_by(Transfer.created_at.desc(), Transfer.id.desc())


def own_transfer_values(row):
    # The selected columns are the cells (which also lets PostgreSQL write the CSV).
    return list(row)


TIME_FILTER_LABELS = {
    "start_time": {"en": "From", "zh-CN": "开始时间", "zh-TW": "開始時間"},
    "end_time": {"en": "To", "zh-CN": "结束时间", "zh-TW": "結束時間"},
}

register_report(
    "own-transfers",
    columns=[
        Column("order_number", {"en": "Order number", "zh-CN": "订单号", "zh-TW": "訂單號"}, width=1.3, kind="id"),
        Column("submit_time", {"en": "Submit time", "zh-CN": "提交时间", "zh-TW": "提交時間"}, width=1.3, kind="time"),
        Column("source_account", {"en": "From account", "zh-CN": "转出账户", "zh-TW": "轉出帳戶"}, kind="id"),
        Column("target_account", {"en": "To account", "zh-CN": "转入账户", "zh-TW": "轉入帳戶"}, kind="id"),
        Column("amount", {"en": "Amount", "zh-CN": "金额", "zh-TW": "金額"}, align="right", kind="number", places=2),
        Column("currency", {"en": "Currency", "zh-CN": "币种", "zh-TW": "幣種"}, width=0.6),
        Column("status", {"en": "Status", "zh-CN": "状态", "zh-TW": "狀態"}, width=0.8),
        Column("remark", {"en": "Remark", "zh-CN": "备注", "zh-TW": "備註"}, width=2),
    ],
    query_for=own_transfers_query,
    row_to_values=own_transfer_values,
    title_i18n={"en": "Transfers", "zh-CN": "转账记录", "zh-TW": "轉帳記錄"},
    filter_labels=TIME_FILTER_LABELS,
    csv_by_copy=True,
)
