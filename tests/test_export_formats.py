"""Exports read like the lists, on PostgreSQL and on SQLite (the first-run database): for
every report, the CSV, the XLSX and the PDF show each cell as the list route shows it -
money to 2 decimals, volumes to 2, prices to 5, times in the broker's time zone as
`YYYY-MM-DD HH:MM:SS`. A spreadsheet gets numbers and dates with formats, not text; the PDF
embeds its one font (Latin and Chinese) and never cuts a number or a time."""

import csv
import io
import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from flask_migrate import upgrade

from crm_app import create_app
from crm_app.admin.services import create_user
from crm_app.auth.models import User
from crm_app.deposits.models import Deposit
from crm_app.exports.services import REPORTS
from crm_app.extensions import db
from crm_app.funding.models import DepositChannel, WithdrawalChannel
from crm_app.review.models import ReviewItem
from crm_app.sync.models import ClosedPosition, OpenPosition, PendingOrder
from crm_app.trading.models import AccountType, TradingAccount, TradingServer
from crm_app.transfers.models import Transfer
from crm_app.withdrawals.models import Withdrawal
from tests.conftest import CHEAP_ARGON2, IsolatedClient, empty_database_and_redis
from tests.test_exports import pdf_fonts, pdf_text_runs

PASSWORD = "Quartz-Lantern-58"
EMAIL = "format-check@example.test"
WIRE = "%Y-%m-%d %H:%M:%S"
REPORT_QUERIES = {
    "deposits": {"status": "all"},
    "withdrawals": {"status": "all", "method": "all"},
    "transfers": {"status": "all"},
    "history-orders": {"trading_type": "all"},
    "positions": {"trading_type": "all"},
    "pending-orders": {"trading_type": "all"},
}
NUMBER_FORMATS = {2: "0.00", 5: "0.00000"}


# The same book on either database --------------------------------------------------------


def seed_every_report():
    """Rows for each report whose numbers and times show the formatting: whole amounts
    (SQLite hands back "250.0000000000"), prices and volumes that need rounding half away from
    zero, a negative amount, a missing open time, and times late in the UTC day (the next day
    in the broker's UTC+8). Runs in the current app context."""
    from crm_app.broker.services import update_setting

    update_setting("broker", {"timezone": "Asia/Shanghai"})
    create_user(
        {"email": EMAIL, "password": PASSWORD, "user_type": "client", "first_name": "爱丽丝", "last_name": "王"},
        None,
        None,
    )
    db.session.commit()
    user = db.session.query(User).filter_by(email=EMAIL).one()
    server = TradingServer(
        name="Formats MT5",
        platform="MT5",
        is_demo=False,
        base_url="http://127.0.0.1:9",
        manager_login=1000,
        manager_password_encrypted="unused",
        next_login=7_000_000,
        last_login=7_000_999,
    )
    db.session.add(server)
    db.session.flush()
    kind = AccountType(name="Standard", server_id=server.id, mt_group="real\\standard")
    db.session.add(kind)
    db.session.flush()
    logins = itertools.count(7_000_000)

    def account():
        row = TradingAccount(
            user_id=user.id, server_id=server.id, account_type_id=kind.id, login=next(logins), leverage=200
        )
        db.session.add(row)
        db.session.flush()
        return row

    def reviewed(model_row, kind_name, status):
        db.session.add(model_row)
        db.session.flush()
        item = ReviewItem(type=kind_name, status=status, user_id=user.id, object_id=model_row.id)
        db.session.add(item)
        db.session.flush()
        model_row.review_item_id = item.id

    deposit_channel = DepositChannel(method="bank_transfer", name="Bank", min_amount=Decimal(1), max_amount=Decimal(9))
    withdrawal_channel = WithdrawalChannel(method="cryptocurrency", name="USDT", min_amount=1, max_amount=9)
    db.session.add_all([deposit_channel, withdrawal_channel])
    db.session.flush()
    late = datetime(2026, 12, 5, 22, 0, 7)  # 2026-12-06 06:00:07 in the broker's zone
    for index, (amount, fee) in enumerate([("250", "0"), ("1234.5", "1.25"), ("0.07", "0")]):
        when = late - timedelta(hours=index)
        money_account = account()
        reviewed(
            Deposit(
                order_number=f"DP{index}",
                user_id=user.id,
                trading_account_id=money_account.id,
                channel_id=deposit_channel.id,
                amount=Decimal(amount),
                fee=Decimal(fee),
                currency="USD",
                status="auditing",
                created_at=when,
                expires_at=when + timedelta(days=1),
                submitted_at=when,
            ),
            "deposit",
            "approved",
        )
        reviewed(
            Withdrawal(
                order_number=f"WD{index}",
                user_id=user.id,
                trading_account_id=money_account.id,
                channel_id=withdrawal_channel.id,
                method="cryptocurrency",
                amount=Decimal(amount),
                fee=Decimal(fee),
                account_currency="USD",
                exchange_rate=Decimal("1"),
                remittance_amount=Decimal(amount) - Decimal(fee),
                currency="USDT",
                payout_details_encrypted="x",
                status="auditing",
                created_at=when,
            ),
            "withdrawal",
            "pending",
        )
        reviewed(
            Transfer(
                order_number=f"TR{index}",
                user_id=user.id,
                source_account_id=money_account.id,
                target_account_id=account().id,
                amount=Decimal(amount),
                currency="USD",
                status="approved",
                created_at=when,
            ),
            "transfer",
            "approved",
        )
    trading = account()
    common = {"server_id": server.id, "login": trading.login, "trading_account_id": trading.id}
    for index, (price, volume, open_time) in enumerate(
        [
            (Decimal("1.123445"), Decimal("0.125"), late - timedelta(hours=3)),
            (Decimal("2000"), Decimal("1"), None),
            (Decimal("0.5"), Decimal("0.005"), late - timedelta(days=1)),
        ]
    ):
        db.session.add(
            ClosedPosition(
                **common,
                close_deal_ticket=900 + index,
                close_order=950 + index,
                position_id=800 + index,
                symbol="EURUSD",
                side=("buy", "sell")[index % 2],
                volume=volume,
                open_price=price if open_time else None,
                open_time=open_time,
                close_price=price + Decimal("0.00001"),
                close_time=late + timedelta(minutes=index),
                sl=Decimal("0"),
                tp=price * 2,
                profit=Decimal("-250"),
                commission=Decimal("-0.7"),
                swap=Decimal("0"),
            )
        )
        db.session.add(
            OpenPosition(
                **common,
                ticket=700 + index,
                symbol="XAUUSD",
                side="sell",
                volume=volume,
                open_price=price,
                open_time=late - timedelta(minutes=index),
                current_price=price,
                sl=Decimal("0"),
                tp=Decimal("0"),
                profit=Decimal("12"),
                swap=Decimal("-1.5"),
                commission=Decimal("0"),
            )
        )
        db.session.add(
            PendingOrder(
                **common,
                ticket=600 + index,
                symbol="GBPUSD",
                type="buy_limit",
                volume=volume,
                price=price,
                setup_time=late - timedelta(seconds=index),
            )
        )
    db.session.commit()


# The two databases ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_app(tmp_path_factory):
    """The first run's app: SQLite, jobs run in-process (no Redis)."""
    folder = tmp_path_factory.mktemp("export_formats")
    application = create_app(
        {
            "APP_ENV": "test",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'crm.db'}",
            "REDIS_URL": None,
            "UPLOAD_FOLDER": str(folder / "uploads"),
            "EXPORT_FOLDER": str(folder / "exports"),
            "TESTING": True,
            **CHEAP_ARGON2,
        }
    )
    application.test_client_class = IsolatedClient
    with application.app_context():
        upgrade()
        seed_every_report()
    return application


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request):
    """(test client, run the queued jobs) on a book seeded alike on either database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_app").test_client(), lambda: None
    app = request.getfixturevalue("app")
    empty_database_and_redis(app)  # `clean_state` does so only for tests that ask for `app`
    with app.app_context():
        seed_every_report()
    return app.test_client(), request.getfixturevalue("run_jobs")


def sign_in(client):
    answer = client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert answer.status_code == 200, answer.get_json()
    return {"Authorization": f"Bearer {answer.get_json()['token']}"}


def listed(client, headers, report):
    """The list route's rows as cells: a nested account is its login, null is empty."""
    response = client.get(
        f"/api/v1/reports/{report}", headers=headers, query_string={"size": 100, **REPORT_QUERIES[report]}
    )
    assert response.status_code == 200, response.get_json()
    rows = response.get_json()["list"]
    assert rows, f"the book has rows for {report}"
    keys = [column.key for column in REPORTS[report].columns]
    cells = []
    for row in rows:
        values = [row[key]["account"] if isinstance(row[key], dict) else row[key] for key in keys]
        cells.append(["" if value is None else str(value) for value in values])
    return cells


def exported(client, run_jobs, headers, report, export_format):
    answer = client.post(
        f"/api/v1/reports/{report}/export", headers=headers, json={**REPORT_QUERIES[report], "format": export_format}
    )
    assert answer.status_code == 200, answer.get_json()
    run_jobs()
    response = client.get(answer.get_json()["download_url"])
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.data


# The comparison ------------------------------------------------------------------------------


@pytest.mark.parametrize("report", REPORT_QUERIES)
def test_every_export_shows_each_cell_as_the_list_does(database, report):
    client, run_jobs = database
    headers = sign_in(client)
    expected = listed(client, headers, report)
    columns = REPORTS[report].columns
    titles = [column.header("en") for column in columns]
    # The rows were chosen to need formatting: the list says so first.
    flat = {cell for row in expected for cell in row}
    if report in ("deposits", "withdrawals", "transfers"):
        assert {"250.00", "1234.50", "0.07"} <= flat
        assert "2026-12-06 06:00:07" in flat
    if report == "history-orders":
        assert {"1.12345", "0.13", "-250.00", "-0.70", "0.01", ""} <= flat

    # CSV: the list's text, cell for cell.
    data = exported(client, run_jobs, headers, report, "csv")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows == [titles, *expected]

    # XLSX: numbers are numbers with the list's places as their format; times are dates.
    data = exported(client, run_jobs, headers, report, "xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    sheet_rows = list(sheet.iter_rows())
    assert [cell.value for cell in sheet_rows[0]] == titles
    assert len(sheet_rows) == len(expected) + 1
    for cells, wanted in zip(sheet_rows[1:], expected, strict=True):
        for column, cell, text in zip(columns, cells, wanted, strict=True):
            where = f"{report} {column.key} {text!r}"
            if text == "":
                assert cell.value is None, where
            elif column.kind == "number":
                assert isinstance(cell.value, (int, float)) and not isinstance(cell.value, bool), where
                assert Decimal(str(cell.value)) == Decimal(text), where
                assert cell.number_format == NUMBER_FORMATS[column.places], where
            elif column.kind == "time":
                assert isinstance(cell.value, datetime) and cell.value.strftime(WIRE) == text, where
                assert cell.number_format == "yyyy-mm-dd hh:mm:ss", where
            else:
                assert str(cell.value) == text, where

    # PDF: every row's cells in order; numbers and times whole, never cut; fonts embedded.
    data = exported(client, run_jobs, headers, report, "pdf")
    runs = pdf_text_runs(data)
    position = runs.index(titles[0])
    assert runs[position : position + len(titles)] == titles, "every header whole"
    position += len(titles) - 1
    for row in expected:
        for column, cell in zip(columns, row, strict=True):
            if not cell:
                continue
            position += 1
            found = runs[position]
            if column.kind in ("number", "time"):
                assert found == cell, f"{report} {column.key}: {found!r} in the PDF, {cell!r} in the list"
            else:
                assert found == cell or (found.endswith("…") and cell.startswith(found[:-1])), (found, cell)
    fonts = pdf_fonts(data)
    assert fonts and all(embedded for _, embedded in fonts), fonts
    assert any("WenQuanYiMicroHei" in name for name, _ in fonts) and not any("STSong" in n for n, _ in fonts)
    if report == "deposits":
        assert "爱丽丝 王" in runs, "Chinese text drawn in the embedded font"
