"""Exports read like the lists, on PostgreSQL and on SQLite (the first-run database): for
every report, the CSV, the XLSX and the PDF show each cell as the list route shows it -
money to 2 decimals, volumes to 2, prices to 5, times in the broker's time zone as
`YYYY-MM-DD HH:MM:SS` in whole seconds. The IB's commission exports (#56, #58) too. A
spreadsheet gets numbers and dates with formats, not text; the PDF embeds its one font (Latin
and Chinese) and never cuts anything: identifiers, names, numbers and times are whole."""

import csv
import io
import itertools
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import openpyxl
import pytest
from flask_migrate import upgrade

from crm_app import create_app
from crm_app.admin.services import create_user
from crm_app.auth.models import User
from crm_app.deposits.models import Deposit
from crm_app.exports.services import REPORTS
from crm_app.exports.writers import ExportDocument, PdfWriter
from crm_app.extensions import db
from crm_app.funding.models import DepositChannel, WithdrawalChannel
from crm_app.rebates.models import Rebate, RebateSettlement
from crm_app.review.models import ReviewItem
from crm_app.sync.models import ClosedPosition, OpenPosition, PendingOrder
from crm_app.trading.models import AccountType, TradingAccount, TradingServer
from crm_app.transfers.models import Transfer
from crm_app.withdrawals.models import Withdrawal
from tests.conftest import CHEAP_ARGON2, IsolatedClient, empty_database_and_redis
from tests.test_exports import pdf_fonts, pdf_text_runs

PASSWORD = "Quartz-Lantern-58"
EMAIL = "format-check@example.test"
IB_EMAIL = "format-check-ib@example.test"
# Names as long as people have them: cut in a PDF before ("Grace Hop…").
LONG_CLIENT = ("Grace Brewster Murray", "Hopper-Lovelace")
WIRE = "%Y-%m-%d %H:%M:%S"
REPORT_QUERIES = {
    "deposits": {"status": "all"},
    "withdrawals": {"status": "all", "method": "all"},
    "transfers": {"status": "all"},
    "history-orders": {"trading_type": "all"},
    "positions": {"trading_type": "all"},
    "pending-orders": {"trading_type": "all"},
}
# The IB's commission exports: the route, the list route, and a body copied from the seed (#56, #58).
IB_REPORTS = {
    "ib-commission-details": "/api/v1/ib/commissions/details",
    "ib-commissions": "/api/v1/ib/commissions",
}
IB_BODY = {"time_search_type": "calculate_at", "start_time": "2026-12-01", "end_time": "2026-12-31"}
NUMBER_FORMATS = {0: "0", 2: "0.00", 5: "0.00000"}


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
    # 2026-12-06 06:00:07.824 in the broker's zone: the files say 06:00:07, as the list does.
    late = datetime(2026, 12, 5, 22, 0, 7, 824000)
    for index, (amount, fee) in enumerate([("250", "0"), ("1234.5", "1.25"), ("0.07", "0")]):
        when = late - timedelta(hours=index)
        money_account = account()
        reviewed(
            Deposit(
                order_number=f"DP20261206RWZR{index}K7QMX",
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
                order_number=f"WD20261206EF2Z{index}P9LTQ",
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
                order_number=f"TR20261206HB8C{index}W4NDY",
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
    seed_commissions(late)
    db.session.commit()


def seed_commissions(late):
    """An IB with a paid settlement and rebates on a long-named client's trades: a volume the list
    shows as 0.1, prices to 5 places, money that needs its 2 places, times with fractions."""
    create_user(
        {"email": IB_EMAIL, "password": PASSWORD, "user_type": "ib", "first_name": "Ida", "last_name": "Broker"},
        None,
        None,
    )
    first, last = LONG_CLIENT
    create_user(
        {
            "email": "grace@example.test",
            "password": PASSWORD,
            "user_type": "client",
            "first_name": first,
            "last_name": last,
        },
        None,
        None,
    )
    db.session.commit()
    ib = db.session.query(User).filter_by(email=IB_EMAIL).one()
    client = db.session.query(User).filter_by(email="grace@example.test").one()
    server = db.session.query(TradingServer).one()
    kind = db.session.query(AccountType).one()
    payout = TradingAccount(user_id=ib.id, server_id=server.id, account_type_id=kind.id, login=7_000_900, leverage=100)
    db.session.add(payout)
    db.session.flush()
    settlement = RebateSettlement(
        order_number="RS20261206HOPPERQX7Z",
        ib_id=ib.id,
        trading_account_id=payout.id,
        login=payout.login,
        currency="USD",
        total_orders=2,
        total_amount=Decimal("12.5"),
        period_end=late,
        calculate_at=late,
        status="paid",
        grant_at=late + timedelta(minutes=5, microseconds=100),
    )
    db.session.add(settlement)
    db.session.flush()
    for index, (volume, open_price, close_price, profit, amount) in enumerate(
        [
            (Decimal("0.1"), Decimal("1.08505"), Decimal("1.101"), Decimal("159.5"), Decimal("10")),
            (Decimal("0.125"), Decimal("1.123445"), Decimal("2000"), Decimal("-3"), Decimal("2.5")),
        ]
    ):
        db.session.add(
            Rebate(
                server_id=server.id,
                close_deal_ticket=123_456_789_010 + index,
                close_order=98_765_432_100 + index,
                ib_id=ib.id,
                client_id=client.id,
                login=7_000_950,
                symbol="EURUSD",
                volume=volume,
                open_price=open_price,
                close_price=close_price,
                close_time=late - timedelta(hours=index),
                profit=profit,
                level=1,
                amount=amount,
                currency="USD",
                calculated_at=late - timedelta(hours=index),
                settlement_id=settlement.id,
            )
        )


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


def sign_in(client, email=EMAIL):
    answer = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.get_json()
    return {"Authorization": f"Bearer {answer.get_json()['token']}"}


def list_cells(report, rows):
    """The list route's rows as the files' cells: a nested account is its login, null is empty,
    a number the list sends as a JSON number (an IB detail's volume) is written to its places."""
    assert rows, f"the book has rows for {report}"
    cells = []
    for row in rows:
        texts = []
        for column in REPORTS[report].columns:
            value = row[column.key]
            if isinstance(value, dict):
                value = value["account"]
            if value is None:
                texts.append("")
            elif column.kind == "number" and not isinstance(value, str):
                rounded = Decimal(str(value)).quantize(Decimal(1).scaleb(-column.places), rounding=ROUND_HALF_UP)
                texts.append(f"{rounded:.{column.places}f}")
            else:
                texts.append(str(value))
        cells.append(texts)
    return cells


def listed(client, headers, report):
    response = client.get(
        f"/api/v1/reports/{report}", headers=headers, query_string={"size": 100, **REPORT_QUERIES[report]}
    )
    assert response.status_code == 200, response.get_json()
    return list_cells(report, response.get_json()["list"])


def download(client, run_jobs, headers, url, body):
    answer = client.post(url, headers=headers, json=body)
    assert answer.status_code == 200, answer.get_json()
    run_jobs()
    response = client.get(answer.get_json()["download_url"])
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.data


def exported(client, run_jobs, headers, report, export_format):
    body = {**REPORT_QUERIES[report], "format": export_format}
    return download(client, run_jobs, headers, f"/api/v1/reports/{report}/export", body)


# The comparison ------------------------------------------------------------------------------


def assert_files_read_like_the_list(report, expected, export):
    """The CSV, XLSX and PDF of `report` (`export(format)` -> bytes) against the list's cells;
    the PDF's bytes are returned."""
    columns = REPORTS[report].columns
    titles = [column.header("en") for column in columns]
    # CSV: the list's text, cell for cell.
    data = export("csv")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows == [titles, *expected]

    # XLSX: numbers are numbers with the list's places as their format; times are dates.
    data = export("xlsx")
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
                # Whole seconds: Excel would show 06:00:07.824 as 06:00:08.
                assert cell.value.microsecond == 0, where
                assert cell.number_format == "yyyy-mm-dd hh:mm:ss", where
            else:
                assert str(cell.value) == text, where

    # PDF: every row's cells in order, each whole: identifiers, names, numbers, times.
    data = export("pdf")
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
            assert found == cell, f"{report} {column.key}: {found!r} in the PDF, {cell!r} in the list"
    assert not any("…" in run for run in runs), "nothing is cut"
    return data


@pytest.mark.parametrize("report", REPORT_QUERIES)
def test_every_export_shows_each_cell_as_the_list_does(database, report):
    client, run_jobs = database
    headers = sign_in(client)
    expected = listed(client, headers, report)

    def export(export_format):
        return exported(client, run_jobs, headers, report, export_format)

    # The rows were chosen to need formatting: the list says so first.
    flat = {cell for row in expected for cell in row}
    if report in ("deposits", "withdrawals", "transfers"):
        assert {"250.00", "1234.50", "0.07"} <= flat
        assert "2026-12-06 06:00:07" in flat, "the list shows whole seconds"
    if report == "history-orders":
        assert {"1.12345", "0.13", "-250.00", "-0.70", "0.01", ""} <= flat

    data = assert_files_read_like_the_list(report, expected, export)
    runs = pdf_text_runs(data)
    keys = [column.key for column in REPORTS[report].columns]
    for row in expected:
        for key in ("order_number", "user_name"):
            if key in keys:
                assert row[keys.index(key)] in runs, f"{report}: {row[keys.index(key)]!r} whole in the PDF"
    fonts = pdf_fonts(data)
    assert fonts and all(embedded for _, embedded in fonts), fonts
    assert any("WenQuanYiMicroHei" in name for name, _ in fonts) and not any("STSong" in n for n, _ in fonts)
    if report == "deposits":
        assert "爱丽丝 王" in runs, "Chinese text drawn in the embedded font"


@pytest.mark.parametrize("report", IB_REPORTS)
def test_ib_commission_exports_show_each_cell_as_the_list_does(database, report):
    """#56 and #58 (bodies from the seed) against #57 and #59: a detail's volume the list sends as
    0.1 is 0.10, prices keep 5 places, profits and rebates 2, times are whole seconds."""
    client, run_jobs = database
    headers = sign_in(client, IB_EMAIL)
    listing = IB_REPORTS[report]
    response = client.get(listing, headers=headers, query_string={"page": 1, "size": 100, **IB_BODY})
    assert response.status_code == 200, response.get_json()
    rows = response.get_json()["list"]
    expected = list_cells(report, rows)
    if report == "ib-commission-details":
        first = next(row for row in rows if row["open_price"] == "1.08505")
        assert (first["volume"], first["profit"], first["amount"]) == (0.1, "159.50", "10.00")
        flat = {cell for row in expected for cell in row}
        assert {"0.10", "0.13", "1.08505", "1.12345", "1.10100", "2000.00000", "-3.00", "2.50"} <= flat
        assert "Grace Brewster Murray Hopper-Lovelace" in flat and "98765432100" in flat
    else:
        assert expected[0][:4] == ["RS20261206HOPPERQX7Z", "7000900", "2", "12.50"]
    assert "2026-12-06 06:00:07" in {cell for row in expected for cell in row}

    def export(export_format):
        return download(client, run_jobs, headers, f"{listing}/export", {**IB_BODY, "format": export_format})

    assert_files_read_like_the_list(report, expected, export)


def test_every_export_column_says_how_it_is_shown():
    """No report leaves a number, a time or an identifier as untyped text: each file shows it as
    the list does (places, broker time, never cut)."""
    numbers = {"amount", "fee", "commission", "swap", "profit", "volume", "total_amount", "total_orders"}
    numbers |= {"open_price", "close_price", "sl", "tp", "pending_price"}
    times = {"submit_time", "open_time", "close_time", "pending_time", "calculate_at", "grant_at"}
    ids = {"order_number", "mt_order_number", "account", "trading_account", "login_id"}
    ids |= {"source_account", "target_account", "source_trading_account", "target_trading_account"}
    for name, source in REPORTS.items():
        if name.startswith("test-"):  # registered by other tests
            continue
        for column in source.columns:
            where = f"{name}.{column.key}"
            if column.key in numbers:
                assert column.kind == "number" and column.places is not None, where
            elif column.key in times:
                assert column.kind == "time", where
            elif column.key in ids:
                assert column.kind == "id", where


def test_pdf_wraps_a_name_rather_than_cutting_it_and_keeps_identifiers_whole(tmp_path):
    """Too many wide columns for the page: the font gets smaller, then a name wraps in its cell;
    an order number stays whole on one line."""
    order = "WD20261206EF2ZQ8LMN4XK7P"
    name = "Grace Brewster Murray Hopper-Lovelace of the Royal Society of Very Long Names " * 3
    kinds = [("id", None), ("text", None)] + [("time", None)] * 10 + [("number", 2)] * 6
    headers = ["Order number", "Client"] + [f"Time {i}" for i in range(10)] + [f"Amount {i}" for i in range(6)]
    document = ExportDocument(title="Wide", headers=headers, kinds=kinds, rows_total=1)
    path = tmp_path / "wide.pdf"
    writer = PdfWriter(str(path), document)
    late = datetime(2026, 12, 6, 3, 4, 5, 999999)
    writer.write_row([order, name.strip()] + [late] * 10 + [Decimal("-1234567.5")] * 6)
    writer.close()
    runs = pdf_text_runs(path.read_bytes())
    assert order in runs, "the identifier whole, on one line"
    assert "2026-12-06 03:04:05" in runs and "-1234567.50" in runs
    assert not any("…" in run for run in runs)
    assert "".join(runs).replace(" ", "").count(name.strip().replace(" ", "")) == 1, "the name, wrapped, whole"
