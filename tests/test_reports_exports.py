"""Each report's export carries exactly the rows of its list route, in the caller's scope."""

import csv
import io
from datetime import datetime

import openpyxl

from tests.test_reports_money import add_transfer, tree  # noqa: F401 - the `tree` fixture


def download(client, run_jobs, url):
    pending = client.get(url)
    assert pending.status_code == 202, pending.get_json()
    run_jobs()
    ready = client.get(url)
    assert ready.status_code == 200, ready.get_data(as_text=True)[:300]
    return ready


def test_transfer_export_matches_the_list_in_the_ibs_scope(client, tree, run_jobs):  # noqa: F811
    base = datetime(2026, 11, 20, 8, 0, 0)
    for index, name in enumerate(("carol", "alice", "dave")):
        add_transfer(tree[name][0], tree["book"], f"{10 + index}.00", "approved", base)
    headers = tree["ib1"][1]
    listed = client.get("/api/v1/reports/transfers?status=all", headers=headers).get_json()["list"]

    answer = client.post("/api/v1/reports/transfers/export", headers=headers, json={"status": "all"})
    assert answer.status_code == 200, answer.get_json()
    body = download(client, run_jobs, answer.get_json()["download_url"]).get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert rows[0][:3] == ["Order number", "Submit time", "Client"]
    assert [row[0] for row in rows[1:]] == [row["order_number"] for row in listed]
    assert [row[5] for row in rows[1:]] == [row["amount"] for row in listed]
    assert "Dave" not in body


def test_xlsx_export_of_the_deposit_report_and_bad_format(client, tree, run_jobs):  # noqa: F811
    headers = tree["admin"][1]
    answer = client.post("/api/v1/reports/deposits/export", headers=headers, json={"status": "all", "format": "xlsx"})
    assert answer.status_code == 200
    response = download(client, run_jobs, answer.get_json()["download_url"])
    sheet = openpyxl.load_workbook(io.BytesIO(response.get_data())).active
    assert [cell.value for cell in next(sheet.iter_rows(max_row=1))][:2] == ["Order number", "Submit time"]
    bad = client.post("/api/v1/reports/deposits/export", headers=headers, json={"status": "all", "format": "doc"})
    assert bad.status_code == 422
    assert client.post("/api/v1/reports/deposits/export", json={"status": "all"}).status_code == 401


def test_pdf_export_of_closed_orders_in_chinese(client, tree, run_jobs):  # noqa: F811
    headers = {**tree["carol"][1], "Accept-Language": "zh-CN"}
    answer = client.post(
        "/api/v1/reports/history-orders/export", headers=headers, json={"trading_type": "all", "format": "pdf"}
    )
    assert answer.status_code == 200
    response = download(client, run_jobs, answer.get_json()["download_url"])
    assert response.headers["Content-Type"].startswith("application/pdf")
    assert response.get_data()[:5] == b"%PDF-"
