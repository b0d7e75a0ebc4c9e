"""Each report's export carries exactly the rows of its list route, in the caller's scope:
every report, every format (CSV, XLSX, PDF), opened and compared row for row."""

import csv
import io
import itertools
import re
from datetime import datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest

from crm_app.exports.services import REPORTS
from crm_app.extensions import db
from crm_app.funding.models import DepositChannel, WithdrawalChannel
from crm_app.review.models import ReviewItem
from crm_app.sync.models import ClosedPosition
from crm_app.withdrawals.models import Withdrawal
from tests.test_exports import pdf_text_runs
from tests.test_reports_money import OBJECT_STATUS, account_for, add_deposit, add_transfer, tree  # noqa: F401 - `tree` fixture
from tests.test_reports_trading import traders  # noqa: F401 - the `traders` fixture

WIRE = "%Y-%m-%d %H:%M:%S"
FORMATS = ("csv", "xlsx", "pdf")
_numbers = itertools.count(9_100_000)


# Reading the files ----------------------------------------------------------------------


def download(client, run_jobs, url):
    pending = client.get(url)
    assert pending.status_code == 202, pending.get_json()
    run_jobs()
    ready = client.get(url)
    assert ready.status_code == 200, ready.get_data(as_text=True)[:300]
    return ready


def listed_cells(client, headers, report, query):
    """The list route's rows as the file's cells: a nested account is its login, null is empty."""
    response = client.get(f"/api/v1/reports/{report}", headers=headers, query_string={"size": 200, **query})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["total"] == len(answer["list"])
    keys = [column.key for column in REPORTS[report].columns]
    cells = []
    for row in answer["list"]:
        values = []
        for key in keys:
            value = row[key]
            if isinstance(value, dict):
                value = value["account"]
            values.append("" if value is None else str(value))
        cells.append(values)
    return cells


def csv_cells(data):
    assert data.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def xlsx_cells(data, expected):
    """The sheet's rows as text, numbers checked as numbers against what the list says."""
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    cells = [list(rows[0])]
    for row, wanted in zip(rows[1:], expected, strict=True):
        texts = []
        row = list(row) + [None] * (len(wanted) - len(row))  # trailing empty cells are not stored
        for value, text in zip(row, wanted, strict=True):
            if value is None:
                texts.append("")
            elif isinstance(value, datetime):
                texts.append(value.strftime(WIRE))
            elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                # A number cell: equal as a number to the list's text (Excel keeps no trailing zeros).
                texts.append(text if Decimal(str(value)) == Decimal(text) else repr(value))
            else:
                texts.append(value)
        cells.append(texts)
    assert len(rows) == len(expected) + 1
    return cells


def pdf_strings(data):
    return pdf_text_runs(data)


def assert_pdf_rows(data, headers, expected):
    """Every row's cells, in order and whole, among the PDF's strings (nothing is cut)."""
    strings = pdf_strings(data)
    position = strings.index(headers[0])
    for row in expected:
        for cell in (cell for cell in row if cell):
            while True:
                position += 1
                assert position < len(strings), f"{cell!r} of {row} is not in the PDF"
                found = strings[position]
                assert not found.endswith("…"), f"{found!r} cut in the PDF"
                if found == cell:
                    break


def export_and_compare(client, run_jobs, headers, report, query, export_format):
    expected = listed_cells(client, headers, report, query)
    answer = client.post(f"/api/v1/reports/{report}/export", headers=headers, json={**query, "format": export_format})
    assert answer.status_code == 200, answer.get_json()
    response = download(client, run_jobs, answer.get_json()["download_url"])
    assert re.search(rf"{report}-\d{{8}}-\d{{4}}\.{export_format}", response.headers["Content-Disposition"])
    titles = [column.header("en") for column in REPORTS[report].columns]
    if export_format == "csv":
        assert response.headers["Content-Type"].startswith("text/csv")
        # Written by PostgreSQL's COPY (its line ends are "\n"; Python's csv writes "\r\n").
        assert b"\r\n" not in response.data
        assert csv_cells(response.data) == [titles, *expected]
    elif export_format == "xlsx":
        assert xlsx_cells(response.data, expected) == [titles, *expected]
    else:
        assert response.data.startswith(b"%PDF-")
        assert_pdf_rows(response.data, titles, expected)
    return expected


# Money reports ----------------------------------------------------------------------------


@pytest.fixture
def money(tree, ctx):  # noqa: F811
    """Deposits, withdrawals and transfers of carol and alice (IB1's tree) and dave (outside),
    some audited, times in the broker's timezone (UTC+8), a Chinese name."""
    from crm_app.broker.services import update_setting

    update_setting("broker", {"timezone": "Asia/Shanghai"})
    carol, alice, dave, admin = (tree[name][0] for name in ("carol", "alice", "dave", "admin"))
    alice.first_name, alice.last_name = "爱丽丝", "王"
    db.session.commit()
    book = tree["book"]
    deposit_channel = DepositChannel(method="bank_transfer", name="Bank", min_amount=Decimal(1), max_amount=Decimal(9))
    withdrawal_channel = WithdrawalChannel(
        method="cryptocurrency", name="USDT", min_amount=Decimal(1), max_amount=Decimal(9)
    )
    db.session.add_all([deposit_channel, withdrawal_channel])
    db.session.commit()
    base = datetime(2026, 11, 20, 20, 30, 0)  # 04:30 the next day in the broker's timezone
    for index, (user, status) in enumerate(
        [(carol, "pending"), (carol, "approved"), (alice, "disapproved"), (alice, "auditing"), (dave, "approved")]
    ):
        when = base - timedelta(hours=index)
        deposit = add_deposit(user, book, deposit_channel, f"{100 + index}.50", status, when)
        add_transfer(user, book, f"{10 + index}.25", status, when)
        add_withdrawal(user, book, withdrawal_channel, ("cryptocurrency", "bank_transfer")[index % 2], status, when)
        if status in ("approved", "disapproved"):
            item = db.session.get(ReviewItem, deposit.review_item_id)
            item.auditor_id = admin.id
    # A draft (never submitted, no review item) is in no report and in no total.
    draft = add_deposit(carol, book, deposit_channel, "1.00", "pending", base)
    item_id, draft.review_item_id = draft.review_item_id, None
    db.session.flush()
    db.session.delete(db.session.get(ReviewItem, item_id))
    db.session.commit()
    return tree


def add_withdrawal(user, book, channel, method, status, when):
    account = account_for(user, book)
    withdrawal = Withdrawal(
        order_number=f"WD{next(_numbers)}",
        user_id=user.id,
        trading_account_id=account.id,
        channel_id=channel.id,
        method=method,
        amount=Decimal("50.00"),
        fee=Decimal("0.25"),
        account_currency="USD",
        exchange_rate=Decimal("1"),
        remittance_amount=Decimal("49.75"),
        currency="USDT",
        payout_details_encrypted="x",
        status=OBJECT_STATUS.get(status, status),
        created_at=when,
    )
    db.session.add(withdrawal)
    db.session.flush()
    item = ReviewItem(type="withdrawal", status=status, user_id=user.id, object_id=withdrawal.id)
    db.session.add(item)
    db.session.flush()
    withdrawal.review_item_id = item.id
    db.session.commit()


MONEY_CASES = [
    ("deposits", {"status": "all"}),
    ("withdrawals", {"status": "all", "method": "all"}),
    ("transfers", {"status": "all"}),
]


@pytest.mark.parametrize("export_format", FORMATS)
@pytest.mark.parametrize(("report", "query"), MONEY_CASES, ids=[case[0] for case in MONEY_CASES])
def test_money_report_exports_match_the_list_in_the_ibs_scope(client, money, run_jobs, report, query, export_format):
    expected = export_and_compare(client, run_jobs, money["ib1"][1], report, query, export_format)
    names = {row[2] for row in expected}
    assert names == {"Carol", "爱丽丝 王"}, "IB1's tree: carol and alice, never dave"
    assert len(expected) == 4
    assert any(row[1].endswith("04:30:00") for row in expected), "times in the broker's timezone"


@pytest.mark.parametrize(
    ("report", "query"),
    [
        ("deposits", {"status": "approved", "start_time": "2026-11-21 02:00:00"}),
        ("withdrawals", {"status": "auditing", "method": "cryptocurrency"}),
        ("transfers", {"status": "all", "end_time": "2026-11-21 03:00:00"}),
    ],
)
def test_money_report_csv_keeps_the_filters_for_admin_and_client(client, money, run_jobs, report, query):
    for caller in ("admin", "carol", "dave"):
        export_and_compare(client, run_jobs, money[caller][1], report, query, "csv")
    deposits = listed_cells(client, money["admin"][1], "deposits", {"status": "all"})
    audited = [row for row in deposits if row[9] in ("approved", "disapproved")]
    assert audited and all(row[10] for row in audited) and all(not row[10] for row in deposits if row not in audited)


# Trading reports --------------------------------------------------------------------------


@pytest.fixture
def trading(traders, ctx):  # noqa: F811
    """The synced trades, plus closed positions whose prices need rounding (half away from
    zero, as the list and PostgreSQL both round), without an open time, and partial closes."""
    from crm_app.broker.services import update_setting

    update_setting("broker", {"timezone": "Asia/Shanghai"})
    account = traders["accounts"]["carol"]
    closed_at = datetime(2026, 11, 20, 20, 30, 0)
    for index, (price, volume, open_time) in enumerate(
        [
            (Decimal("1.12344500"), Decimal("0.50000000"), closed_at - timedelta(hours=3)),
            (Decimal("1.12344499"), Decimal("0.12500000"), None),
            (Decimal("1.12344500"), Decimal("0.37500000"), closed_at - timedelta(hours=3)),  # the rest
            (Decimal("1.3"), Decimal("1"), closed_at),
        ]
    ):
        db.session.add(
            ClosedPosition(
                server_id=account.server_id,
                close_deal_ticket=next(_numbers),
                close_order=next(_numbers),
                position_id=555_001 if index == 1 else 555_000,
                login=account.login,
                symbol="GBPUSD",
                side="sell",
                volume=volume,
                open_price=price if open_time else None,
                open_time=open_time,
                close_price=price + Decimal("0.001"),
                close_time=closed_at + timedelta(minutes=index),
                profit=Decimal("-12.30"),
                commission=Decimal("-0.70"),
                swap=Decimal("0.00"),
                sl=Decimal("1.2"),
                tp=Decimal("0"),
                # The last one's account was deleted: in no report and in no total.
                trading_account_id=None if index == 3 else account.id,
            )
        )
    db.session.commit()
    return traders


TRADING_CASES = [
    ("history-orders", {"trading_type": "all"}),
    ("positions", {"trading_type": "all"}),
    ("pending-orders", {"trading_type": "all"}),
]


@pytest.mark.parametrize("export_format", FORMATS)
@pytest.mark.parametrize(("report", "query"), TRADING_CASES, ids=[case[0] for case in TRADING_CASES])
def test_trading_report_exports_match_the_list_in_the_ibs_scope(
    client, trading, run_jobs, report, query, export_format
):
    expected = export_and_compare(client, run_jobs, trading["headers"]["ib"], report, query, export_format)
    assert expected and {row[1] for row in expected} == {"Carol"}, "the IB's tree only"
    if report == "history-orders":
        assert len(expected) == 5
        gbpusd = [row for row in expected if row[3] == "GBPUSD"]
        # Rounded half away from zero, in the list and in the file alike.
        assert {row[6] for row in gbpusd} == {"1.12345", ""} and {row[8] for row in gbpusd} == {"1.12445", "1.12444"}
        assert {row[5] for row in gbpusd} == {"0.50", "0.13", "0.38"}
        assert any(row[7] == "" for row in gbpusd), "no open time: an empty cell"
        assert "2026-11-21 04:30:00" in {row[9] for row in expected}


@pytest.mark.parametrize(
    ("report", "query"),
    [
        ("history-orders", {"trading_type": "SELL", "symbol": "gbpusd", "time_type": "close"}),
        ("history-orders", {"trading_type": "all", "order_number": "555000"}),
        ("positions", {"trading_type": "BUY"}),
        ("pending-orders", {"trading_type": "BUY_LIMIT"}),
    ],
)
def test_trading_report_csv_keeps_the_filters_for_admin_and_clients(client, trading, run_jobs, report, query):
    for caller in ("admin", "carol", "dave"):
        export_and_compare(client, run_jobs, trading["headers"][caller], report, query, "csv")
    rows = listed_cells(client, trading["headers"]["admin"], "history-orders", {"trading_type": "all"})
    assert len(rows) == 6 and sum(row[0] == "555000" for row in rows) == 2, "a partial close is a row of its own"


def test_export_refuses_a_bad_format_and_needs_a_token(client, money):
    headers = money["admin"][1]
    bad = client.post("/api/v1/reports/deposits/export", headers=headers, json={"status": "all", "format": "doc"})
    assert bad.status_code == 422
    assert client.post("/api/v1/reports/deposits/export", json={"status": "all"}).status_code == 401


def test_pdf_of_closed_orders_in_chinese(client, trading, run_jobs):
    headers = {**trading["headers"]["carol"], "Accept-Language": "zh-CN"}
    answer = client.post(
        "/api/v1/reports/history-orders/export", headers=headers, json={"trading_type": "all", "format": "pdf"}
    )
    response = download(client, run_jobs, answer.get_json()["download_url"])
    strings = pdf_strings(response.data)
    assert "历史订单报表" in strings and "平仓价" in strings
    assert "第 1 页，共 1 页" in strings
