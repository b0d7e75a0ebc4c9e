"""Exports on a real RQ worker against real Redis and PostgreSQL: each format checked
row for row against the list route, the signed link, progress, failures, cleanup,
and memory on a large export."""

import csv
import io
import re
import shutil
import subprocess
import tracemalloc
from datetime import datetime, timedelta
from decimal import Decimal

import itsdangerous.timed
import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from crm_app.common.runtime import runtime
from crm_app.common.timeutil import utcnow
from crm_app.exports import services
from crm_app.exports.models import ExportJob
from crm_app.exports.services import REPORTS, Column, register_report, start_export
from crm_app.extensions import db
from crm_app.trading.models import AccountType, TradingAccount, TradingServer
from crm_app.transfers.models import Transfer

WIRE = "%Y-%m-%d %H:%M:%S"
ENGLISH_HEADERS = [
    "Order number",
    "Submit time",
    "From account",
    "To account",
    "Amount",
    "Currency",
    "Status",
    "Remark",
]
CHINESE_HEADERS = ["订单号", "提交时间", "转出账户", "转入账户", "金额", "币种", "状态", "备注"]
TRADITIONAL_HEADERS = ["訂單號", "提交時間", "轉出帳戶", "轉入帳戶", "金額", "幣種", "狀態", "備註"]
# Text a spreadsheet or a CSV parser could get wrong: Chinese, separators, quotes,
# line breaks, and a formula.
REMARKS = ["rebalance", "转账 备注", 'a, b; "quoted"', "line one\nline two", "=1+1", "", "繁體 轉帳"]


# Data -----------------------------------------------------------------------------------

_logins = iter(range(7_100_000, 7_200_000, 10))


def trading_accounts(user):
    """Two accounts of `user` on a server of their own (no trading server is called)."""
    base = next(_logins)
    server = TradingServer(
        name=f"Export MT5 {base}",
        platform="MT5",
        is_demo=True,
        base_url="http://127.0.0.1:9",
        manager_login=1,
        manager_password_encrypted="unused",
        next_login=base,
        last_login=base + 9,
    )
    db.session.add(server)
    db.session.flush()
    account_type = AccountType(name="Standard", server_id=server.id, mt_group="demo\\standard", leverage_options=[100])
    db.session.add(account_type)
    db.session.flush()
    accounts = [
        TradingAccount(
            user_id=user.id,
            server_id=server.id,
            account_type_id=account_type.id,
            login=base + n,
            leverage=100,
            is_demo=True,
        )
        for n in (1, 2)
    ]
    db.session.add_all(accounts)
    db.session.commit()
    return accounts


def add_transfers(user, count, start=None):
    """`count` transfers of `user`, one minute apart, newest first at `start`."""
    source, target = trading_accounts(user)
    start = start or utcnow().replace(microsecond=0)
    rows = [
        {
            "order_number": f"TR{user.id:04d}{n:06d}",
            "user_id": user.id,
            "source_account_id": source.id,
            "target_account_id": target.id,
            "amount": Decimal(f"{n * 7 + 1}.{n % 100:02d}"),
            "currency": "USD",
            "remark": REMARKS[n % len(REMARKS)],
            "status": ("approved", "auditing", "failed")[n % 3],
            "needs_review": False,
            "created_at": start - timedelta(minutes=n),
            "updated_at": start,
        }
        for n in range(count)
    ]
    db.session.execute(sa.insert(Transfer), rows)
    db.session.commit()
    return source, target


def list_rows(client, headers, **query):
    """The list route's rows, as the export must carry them."""
    response = client.get("/api/v1/client/transfers", headers=headers, query_string={"size": 200, **query})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["total"] == len(body["list"])
    return [
        [
            row["order_number"],
            row["submit_time"],
            row["source_trading_account"]["account"],
            row["target_trading_account"]["account"],
            row["amount"],
            row["currency"],
            row["status"],
            row["remark"],
        ]
        for row in body["list"]
    ]


def export(app, user, export_format="csv", language="en", report="own-transfers", **filters):
    """Ask for an export as a view would; the answer is the signed link."""
    with app.test_request_context(headers={"Accept-Language": language}):
        answer = start_export(user, report, filters, export_format)
    assert set(answer) == {"download_url"}
    return answer["download_url"]


def export_id_of(url):
    return re.search(r"/api/v1/exports/([^/]+)/download", url).group(1)


def fresh(export_id):
    db.session.expire_all()
    return db.session.get(ExportJob, export_id)


@pytest.fixture
def owner(factory, client):
    user = factory.user()
    return user, factory.headers(client, user)


# PDF reading: pypdf, a reader of its own (reportlab only writes) -------------------------


def pdf_text_runs(data):
    """Every string the pages draw, in drawing order (fonts' ToUnicode maps applied)."""
    from pypdf import PdfReader

    runs = []
    for page in PdfReader(io.BytesIO(data)).pages:
        page.extract_text(visitor_text=lambda text, *_: runs.append(text.strip()) if text.strip() else None)
    return runs


def pdf_fonts(data):
    """{(font name, embedded?)} of every font the pages use (a composite font: its descendant)."""
    from pypdf import PdfReader

    fonts = set()
    for page in PdfReader(io.BytesIO(data)).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            if "/DescendantFonts" in font:
                font = font["/DescendantFonts"][0].get_object()
            descriptor = font.get("/FontDescriptor")
            files = descriptor.get_object().keys() if descriptor is not None else ()
            fonts.add((str(font["/BaseFont"]), any(key in files for key in ("/FontFile", "/FontFile2", "/FontFile3"))))
    return fonts


def read_pdf(data):
    """(page count, all text)."""
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(data)).pages), "\n".join(pdf_text_runs(data))


# Each format, row for row ----------------------------------------------------------------


# The same source written row by row in Python (XLSX and PDF always are; a CSV is
# when the source's cells are not its plain columns).
if "test-own-transfers-python" not in REPORTS:
    own = REPORTS["own-transfers"]
    register_report(
        "test-own-transfers-python",
        columns=own.columns,
        query_for=own.query_for,
        row_to_values=lambda row: list(row),
        title_i18n=own.title_i18n,
    )


def own_transfer_entities(user, filters):
    """The shape the report packages use: ORM entities (with joined relationships) in a row."""
    query = sa.select(Transfer, TradingAccount).join(TradingAccount, TradingAccount.id == Transfer.source_account_id)
    return query.where(Transfer.user_id == user.id).order_by(Transfer.created_at.desc(), Transfer.id.desc())


def own_transfer_entity_values(row):
    transfer, source = row
    target = transfer.target_account
    cells = (transfer.order_number, transfer.created_at, str(source.login), str(target.login), transfer.amount)
    return [*cells, transfer.currency, transfer.status, transfer.remark]


if "test-own-transfers-entities" not in REPORTS:
    register_report(
        "test-own-transfers-entities",
        columns=REPORTS["own-transfers"].columns,
        query_for=own_transfer_entities,
        row_to_values=own_transfer_entity_values,
        title_i18n={"en": "Transfers"},
    )


@pytest.mark.parametrize(
    ("report", "line_end"),
    [
        ("own-transfers", b"\n"),
        ("test-own-transfers-python", b"\r\n"),
        ("test-own-transfers-entities", b"\r\n"),
    ],
    ids=["postgres-copy", "python-rows", "orm-entities"],
)
def test_csv_export_matches_the_list_route_row_for_row(app, client, owner, run_jobs, report, line_end):
    from crm_app.broker.services import update_setting

    user, headers = owner
    update_setting("broker", {"timezone": "Asia/Shanghai"})  # times in the file as on the list
    add_transfers(user, 25)
    url = export(app, user, "csv", report=report)
    export_id = export_id_of(url)

    # Before any worker ran: 202 with progress, on the link alone (no bearer token).
    pending = client.get(url)
    assert pending.status_code == 202
    assert pending.get_json() == {
        "id": export_id,
        "status": "queued",
        "rows_done": 0,
        "rows_total": None,
        "progress": 0,
    }
    assert pending.headers["Retry-After"]
    status = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()
    assert status["status"] == "queued" and status["format"] == "csv" and status["report"] == report

    run_jobs()

    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    disposition = response.headers["Content-Disposition"]
    assert re.search(rf'attachment; filename="?{report}-\d{{8}}-\d{{4}}\.csv"?$', disposition), disposition
    assert response.data.startswith("\ufeff".encode()), "UTF-8 with a BOM, for Excel"
    ending = b"\r\n" if response.data.endswith(b"\r\n") else b"\n"
    assert ending == line_end, "written by the path this source takes"
    parsed = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"), newline="")))
    expected = list_rows(client, headers)
    assert len(expected) == 25
    for row in expected:  # a formula is kept as text, not run by the spreadsheet
        row[7] = "'" + row[7] if row[7].startswith("=") else row[7]
    assert parsed == [ENGLISH_HEADERS, *expected]

    status = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()
    assert status["status"] == "done" and status["progress"] == 100
    assert status["rows_done"] == status["rows_total"] == 25
    assert status["file_name"].endswith(".csv") and status["error"] is None
    assert status["finished_at"] and status["download_url"].startswith(f"/api/v1/exports/{export_id}/download?")


def test_xlsx_export_opens_in_openpyxl_with_the_same_rows(app, client, owner, run_jobs):
    user, headers = owner
    add_transfers(user, 30)
    url = export(app, user, "xlsx", language="zh-TW")
    run_jobs()

    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert re.search(r"own-transfers-\d{8}-\d{4}\.xlsx", response.headers["Content-Disposition"])
    workbook = load_workbook(io.BytesIO(response.data), read_only=True)
    sheet = workbook.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == TRADITIONAL_HEADERS
    got = []
    for order_number, submitted, source, target, amount, currency, status, remark in rows[1:]:
        assert isinstance(submitted, datetime)
        got.append(
            [
                order_number,
                submitted.strftime(WIRE),
                source,
                target,
                f"{Decimal(str(amount)):.2f}",
                currency,
                status,
                remark or "",
            ]
        )
    assert got == list_rows(client, headers)
    remarks = [row[7] for row in sheet.iter_rows(min_row=2)]
    formula_like = [cell for cell in remarks if cell.value == "=1+1"]
    assert formula_like and all(cell.data_type == "s" for cell in formula_like), "stays text, never a formula"
    assert len(workbook.worksheets) == 2  # the rows, then what was exported and when


def test_pdf_export_has_page_numbers_chinese_headers_filters_and_branding(app, client, owner, run_jobs, factory):
    from PIL import Image

    from crm_app.broker.services import update_setting

    user, headers = owner
    admin = factory.admin()
    logo = io.BytesIO()
    Image.new("RGB", (120, 40), (20, 90, 160)).save(logo, format="PNG")
    upload = client.post(
        "/api/v1/uploads",
        headers=factory.headers(client, admin),
        data={"file": (io.BytesIO(logo.getvalue()), "logo.png")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201, upload.get_json()
    update_setting(
        "broker",
        {
            "timezone": "Asia/Shanghai",
            "broker_name_i18n": {"en": "Acme FX", "zh-CN": "顶点外汇", "zh-TW": "頂點外匯"},
            "company_logo_url": upload.get_json()["url"],
        },
    )
    start = utcnow().replace(microsecond=0)
    add_transfers(user, 120, start=start)
    since = start - timedelta(minutes=99)  # the newest 100 rows
    url = export(app, user, "pdf", language="zh-CN", start_time=since)
    run_jobs()

    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert re.search(r"own-transfers-\d{8}-\d{4}\.pdf", response.headers["Content-Disposition"])
    data = response.data
    pages, text = read_pdf(data)
    assert pages >= 2
    for header in CHINESE_HEADERS:
        assert header in text
    assert "顶点外汇" in text and "转账记录" in text
    assert f"第 1 页，共 {pages} 页" in text and f"第 {pages} 页，共 {pages} 页" in text
    # The filter as the person gave it: in the broker's timezone (UTC+8).
    shown_since = (since + timedelta(hours=8)).strftime(WIRE)
    assert f"开始时间: {shown_since}" in text
    assert "生成时间" in text and "行数: 100" in text
    expected = list_rows(client, headers, start_time=shown_since)
    assert len(expected) == 100
    assert all(row[0] in text for row in expected)
    assert b"/Subtype /Image" in data, "the broker's logo"
    if shutil.which("pdftotext"):  # a real PDF reader, where the machine has one
        extracted = subprocess.run(["pdftotext", "-", "-"], input=data, capture_output=True, check=True).stdout
        assert "订单号" in extracted.decode() and expected[0][0] in extracted.decode()


def test_pdf_goes_without_a_logo_it_cannot_reach(app, client, owner, run_jobs):
    from crm_app.broker.services import update_setting

    user, _ = owner
    update_setting("broker", {"company_logo_url": "http://127.0.0.1:9/logo.png"})
    add_transfers(user, 3)
    url = export(app, user, "pdf")
    run_jobs()
    response = client.get(url)
    assert response.status_code == 200
    pages, text = read_pdf(response.data)
    assert pages == 1 and "Page 1 of 1" in text and "Order number" in text
    assert b"/Subtype /Image" not in response.data


# The link --------------------------------------------------------------------------------


def test_signed_link_refuses_a_tampered_or_foreign_token(app, client, owner, run_jobs):
    user, _ = owner
    add_transfers(user, 2)
    url = export(app, user)
    other_url = export(app, user)
    run_jobs()
    path, token = url.split("?token=")

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = client.get(f"{path}?token={tampered}")
    assert response.status_code == 403
    body = response.get_json()
    assert body["code"] == "export_link_invalid" and set(body) == {"code", "status", "message", "errors"}
    # A valid signature, but for another export.
    response = client.get(f"{path}?token={other_url.split('?token=')[1]}")
    assert response.status_code == 403
    assert client.get(path).status_code == 422  # no token at all
    assert client.get(url).status_code == 200


def test_expired_link_is_refused_with_410(app, client, owner, run_jobs, monkeypatch):
    user, headers = owner
    add_transfers(user, 2)
    url = export(app, user)
    export_id = export_id_of(url)
    run_jobs()
    assert client.get(url).status_code == 200

    # The signature's own age: a day and an hour later.
    later = itsdangerous.timed.time.time() + 25 * 3600

    class Later:
        @staticmethod
        def time():
            return later

    with monkeypatch.context() as patch:
        patch.setattr(itsdangerous.timed, "time", Later)
        response = client.get(url)
    assert response.status_code == 410
    assert response.get_json()["code"] == "export_link_expired"

    # The export's own expiry, even through a freshly signed link.
    db.session.execute(
        sa.update(ExportJob).where(ExportJob.id == export_id).values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    fresh_url = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()["download_url"]
    assert client.get(fresh_url).status_code == 410


def test_export_status_is_for_its_owner_and_admins_only(app, client, owner, factory, run_jobs):
    user, headers = owner
    add_transfers(user, 1)
    export_id = export_id_of(export(app, user))
    stranger = factory.user()
    admin = factory.admin()

    assert client.get(f"/api/v1/exports/{export_id}").status_code == 401
    response = client.get(f"/api/v1/exports/{export_id}", headers=factory.headers(client, stranger))
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"
    assert client.get("/api/v1/exports/no-such-export-id-0000", headers=headers).status_code == 404
    assert client.get(f"/api/v1/exports/{export_id}", headers=factory.headers(client, admin)).status_code == 200
    assert client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()["id"] == export_id


def test_progress_is_visible_while_the_file_is_built(app, client, owner):
    user, headers = owner
    add_transfers(user, 1)
    url = export(app, user)
    export_id = export_id_of(url)
    # What the worker writes while it streams.
    db.session.execute(
        sa.update(ExportJob)
        .where(ExportJob.id == export_id)
        .values(status="running", rows_done=400, rows_total=1000, started_at=utcnow())
    )
    db.session.commit()
    response = client.get(url)
    assert response.status_code == 202
    assert response.get_json()["progress"] == 40 and response.get_json()["status"] == "running"
    status = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()
    assert (status["rows_done"], status["rows_total"], status["progress"]) == (400, 1000, 40)


# Failures and reruns ------------------------------------------------------------------------


def broken_values(row):
    if row[0].endswith("3"):
        raise RuntimeError("the ledger is offline\nSELECT secret FROM internals")
    return services.own_transfer_values(row)


if "test-broken-transfers" not in REPORTS:
    register_report(
        "test-broken-transfers",
        columns=[Column("order_number", {"en": "Order number"})],
        query_for=services.own_transfers_query,
        row_to_values=broken_values,
        title_i18n={"en": "Broken"},
    )


def division_query(user, filters):
    """Unordered (rows leave in id order): the fifth row divides by zero, mid-COPY."""
    return sa.select(Transfer.order_number, (Transfer.amount / (Transfer.id - 5)).label("ratio")).where(
        Transfer.user_id == user.id
    )


if "test-broken-copy" not in REPORTS:
    register_report(
        "test-broken-copy",
        columns=[Column("order_number", {"en": "Order number"}), Column("ratio", {"en": "Ratio"})],
        query_for=division_query,
        row_to_values=list,
        title_i18n={"en": "Broken"},
        csv_by_copy=True,
    )


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        ("test-broken-transfers", "RuntimeError: the ledger is offline"),  # the first line only
        ("test-broken-copy", "DatabaseError: division by zero"),
    ],
    ids=["python-rows", "postgres-copy"],
)
def test_a_failing_source_records_why_and_the_link_says_so(app, client, owner, run_jobs, report, reason):
    user, headers = owner
    add_transfers(user, 10)
    url = export(app, user, report=report)
    export_id = export_id_of(url)
    run_jobs()

    status = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()
    assert status["status"] == "failed"
    assert status["error"] == reason
    response = client.get(url)
    assert response.status_code == 409
    body = response.get_json()
    assert body["code"] == "export_failed" and body["errors"] == {"reason": [reason]}
    assert reason in body["message"]
    assert not runtime().storage.exists(f"exports/{export_id}.csv")


def test_a_pdf_too_long_to_read_is_refused_with_the_reason(app, client, owner, run_jobs, monkeypatch):
    user, _ = owner
    monkeypatch.setitem(app.config, "EXPORT_PDF_MAX_ROWS", 5)
    add_transfers(user, 6)
    url = export(app, user, "pdf", language="zh-CN")
    run_jobs()
    response = client.get(url)
    assert response.status_code == 409
    assert "too many for a PDF" in response.get_json()["errors"]["reason"][0]


def test_a_done_export_is_not_built_again_and_one_build_runs_at_a_time(app, client, owner, run_jobs):
    from workers.exports import build_export

    user, _ = owner
    add_transfers(user, 4)
    export_id = export_id_of(export(app, user))

    # Another worker holds the export: this run leaves it alone.
    with db.engine.connect() as other:
        with other.begin():
            other.execute(
                sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:id))"),
                {"ns": services.LOCK_NAMESPACE, "id": export_id},
            )
            assert build_export(export_id) == "running"
            assert fresh(export_id).status == "queued"
    run_jobs()
    built = fresh(export_id)
    assert built.status == "done"
    finished_at, key = built.finished_at, built.storage_key
    with runtime().storage.open(key) as stored:
        first = stored.read()

    assert build_export(export_id) == "done"
    again = fresh(export_id)
    assert again.finished_at == finished_at
    with runtime().storage.open(key) as stored:
        assert stored.read() == first


def test_too_many_exports_at_once_are_refused(app, owner, monkeypatch):
    from crm_app.common.errors import TooManyRequests

    user, _ = owner
    monkeypatch.setitem(app.config, "EXPORT_MAX_ACTIVE_PER_USER", 2)
    export(app, user)
    export(app, user)
    with pytest.raises(TooManyRequests):
        export(app, user)


# Cleanup ------------------------------------------------------------------------------------


def test_cleanup_removes_expired_files_and_rows_and_fails_stalled_exports(app, client, owner, run_jobs):
    from workers import enqueue
    from workers.exports import remove_expired_export_files

    user, headers = owner
    add_transfers(user, 2)
    old_url, kept_url, stalled_url = export(app, user), export(app, user), export(app, user)
    old_id, kept_id, stalled_id = map(export_id_of, (old_url, kept_url, stalled_url))
    run_jobs()
    old_key = fresh(old_id).storage_key
    assert runtime().storage.exists(old_key)
    db.session.execute(
        sa.update(ExportJob).where(ExportJob.id == old_id).values(expires_at=utcnow() - timedelta(minutes=1))
    )
    db.session.execute(
        sa.update(ExportJob)
        .where(ExportJob.id == stalled_id)
        .values(status="running", storage_key=None, started_at=utcnow() - timedelta(hours=5))
    )
    db.session.commit()

    enqueue(remove_expired_export_files)
    run_jobs()

    assert fresh(old_id) is None
    assert not runtime().storage.exists(old_key)
    assert client.get(old_url).status_code == 410
    assert client.get(f"/api/v1/exports/{old_id}", headers=headers).status_code == 404
    assert client.get(kept_url).status_code == 200
    stalled = fresh(stalled_id)
    assert stalled.status == "failed" and "worker stopped" in stalled.error


# The helper the report packages use ----------------------------------------------------------


@pytest.fixture
def probe_app(app):
    """An app with one POST .../export route made by `export_route`, on the same
    database, Redis and storage (registered straight on Flask: the OpenAPI document
    of the other tests stays as it is)."""
    from crm_app import create_app
    from crm_app.common.api import Blueprint
    from crm_app.exports.routes import export_route
    from crm_app.transfers.schemas import TransferQuerySchema

    keys = ("APP_ENV", "SQLALCHEMY_DATABASE_URI", "REDIS_URL", "UPLOAD_FOLDER", "TESTING", "SECRET_KEY")
    local = create_app({key: app.config[key] for key in keys})
    blp = Blueprint("exports_probe", __name__, url_prefix="/api/v1/probe")
    export_route(blp, "/transfers/export", "own-transfers", TransferQuerySchema, role="client", summary="Probe")
    local.register_blueprint(blp)
    yield local
    with local.app_context():
        db.engine.dispose()


def test_export_route_takes_the_list_filters_and_a_format(probe_app, app, client, owner, run_jobs):
    user, headers = owner
    start = utcnow().replace(microsecond=0)
    add_transfers(user, 12, start=start)
    since = (start - timedelta(minutes=4)).strftime(WIRE)  # broker timezone: UTC by default
    probe = probe_app.test_client()

    response = probe.post(
        "/api/v1/probe/transfers/export",
        headers=headers,
        json={"format": "xlsx", "page": 1, "size": 20, "start_time": since},
    )
    assert response.status_code == 200, response.get_json()
    url = response.get_json()["download_url"]
    export_id = export_id_of(url)
    stored = fresh(export_id)
    assert stored.format == "xlsx" and set(stored.filters) == {"start_time"}
    run_jobs()
    rows = list(load_workbook(io.BytesIO(client.get(url).data), read_only=True).worksheets[0].values)
    assert [row[0] for row in rows[1:]] == [row[0] for row in list_rows(client, headers, start_time=since)]
    assert len(rows) == 1 + 5

    csv_default = probe.post("/api/v1/probe/transfers/export", headers=headers, json={"page": 1, "size": 20})
    assert fresh(export_id_of(csv_default.get_json()["download_url"])).format == "csv"
    bad = probe.post("/api/v1/probe/transfers/export", headers=headers, json={"format": "docx"})
    assert bad.status_code == 422 and "format" in bad.get_json()["errors"]
    assert probe.post("/api/v1/probe/transfers/export", json={}).status_code == 401


# Memory ---------------------------------------------------------------------------------------


def test_a_50000_row_export_streams_in_bounded_memory(app, client, owner, run_jobs):
    user, _ = owner
    source, target = trading_accounts(user)
    db.session.execute(
        sa.text(
            "INSERT INTO transfers (order_number, user_id, source_account_id, target_account_id, amount, currency,"
            " remark, status, needs_review, created_at, updated_at)"
            " SELECT 'TRM' || lpad(g::text, 8, '0'), :user, :source, :target, (g % 5000) + 0.25, 'USD',"
            " 'bulk 批量 ' || g, 'approved', false, :base - make_interval(secs => g), :base"
            " FROM generate_series(1, 50000) AS g"
        ),
        {"user": user.id, "source": source.id, "target": target.id, "base": utcnow()},
    )
    db.session.commit()
    # Row by row through the server-side cursor (as every XLSX and PDF), then by COPY.
    urls = [export(app, user, "csv", report="test-own-transfers-python"), export(app, user, "csv")]

    tracemalloc.start()
    try:
        run_jobs()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Streamed, the peak is ~2 MB; the same rows fetched at once would take ~36 MB.
    assert peak < 12 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    files = []
    for url in urls:
        assert fresh(export_id_of(url)).rows_done == 50_000
        lines = client.get(url).data.decode("utf-8-sig").splitlines()
        assert len(lines) == 50_001
        assert lines[1].startswith("TRM00000001,") and lines[-1].startswith("TRM00050000,")
        files.append(lines)
    assert files[0] == files[1]


def test_a_file_error_in_the_middle_of_a_copy_fails_that_export_only(app, client, owner, run_jobs, monkeypatch):
    """The COPY is cancelled and drained: the next export on the same worker is built."""
    from crm_app.exports.writers import CsvWriter

    user, _ = owner
    add_transfers(user, 10)
    broken_url, good_url = export(app, user), export(app, user)
    real_sink = CsvWriter.csv_bytes_sink
    calls = []

    def disk_full_once(self):
        write = real_sink(self)

        def failing_write(chunk):
            calls.append(chunk)
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
            return write(chunk)

        return failing_write

    monkeypatch.setattr(CsvWriter, "csv_bytes_sink", disk_full_once)
    run_jobs()
    broken = fresh(export_id_of(broken_url))
    assert broken.status == "failed" and "No space left on device" in broken.error
    assert fresh(export_id_of(good_url)).status == "done"
    assert len(client.get(good_url).data.decode("utf-8-sig").splitlines()) > 10
