"""One object, one status: the deposit, withdrawal and transfer reports (#11, #36, #44) and
their exports show the word the owner's own list (#16, #23, #24) shows, and every word a row
can show is a value the report's `status` filter accepts (the seed's `auditing` in the
filter and its `pending` in the rows both name "waiting for review")."""

import csv
import io

import pytest

from tests.test_reports_exports import download
from tests.test_reports_money import add_deposit, add_transfer, tree  # noqa: F401 - the `tree` fixture
from tests.test_withdrawals import bank_body, desk, no_email_code, withdraw  # noqa: F401 - fixtures

ROW_STATUSES = ("processing", "auditing", "approved", "disapproved", "failed")


def report(client, headers, query):
    response = client.get(f"/api/v1/reports/withdrawals?{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def exported_statuses(client, run_jobs, headers, body):
    answer = client.post("/api/v1/reports/withdrawals/export", headers=headers, json=body)
    assert answer.status_code == 200, answer.get_json()
    rows = list(
        csv.DictReader(
            io.StringIO(download(client, run_jobs, answer.get_json()["download_url"]).data.decode("utf-8-sig"))
        )
    )
    return {row["Order number"]: row["Status"] for row in rows}


def test_a_withdrawal_shows_the_same_status_in_the_report_its_export_and_the_clients_list(client, desk, run_jobs):  # noqa: F811
    created = withdraw(client, desk, bank_body(desk))
    assert created.status_code == 201, created.get_json()
    order_number = created.get_json()["order_number"]
    headers = desk["headers"]
    own = client.get("/api/v1/client/withdrawals?page=1&size=20", headers=headers).get_json()["list"]
    assert [(row["order_number"], row["status"]) for row in own] == [(order_number, "auditing")]

    # The seed's query string; the row's word is the client list's word.
    rows = report(client, headers, "page=1&size=20&status=auditing&method=all")["list"]
    assert [(row["order_number"], row["status"]) for row in rows] == [(order_number, "auditing")]
    # The seed's rows say `pending` for the same state: as a filter it selects the same rows.
    assert report(client, headers, "page=1&size=20&status=pending&method=all")["list"] == rows
    assert report(client, headers, "page=1&size=20&status=approved&method=all")["total"] == 0
    assert exported_statuses(client, run_jobs, headers, {"status": "auditing", "method": "all"}) == {
        order_number: "auditing"
    }

    audit_id = created.get_json()["audit_id"]
    rejected = client.post(
        f"/api/v1/admin/audits/{audit_id}/reject", headers=desk["admin_headers"], json={"remark": "no"}
    )
    assert rejected.status_code == 200, rejected.get_json()
    own = client.get("/api/v1/client/withdrawals?page=1&size=20", headers=headers).get_json()["list"]
    rows = report(client, headers, "page=1&size=20&status=disapproved&method=all")["list"]
    assert own[0]["status"] == rows[0]["status"] == "disapproved"
    assert report(client, desk["admin_headers"], "page=1&size=20&status=auditing&method=all")["total"] == 0
    assert exported_statuses(client, run_jobs, headers, {"status": "all", "method": "all"}) == {
        order_number: "disapproved"
    }


@pytest.mark.parametrize(
    ("path", "extra"),
    [("deposits", ""), ("withdrawals", "&method=all"), ("transfers", "")],
)
def test_every_status_a_report_row_can_show_is_a_filter_value(client, tree, path, extra):  # noqa: F811
    headers = tree["carol"][1]
    for word in ("all", "pending", *ROW_STATUSES):
        response = client.get(f"/api/v1/reports/{path}?page=1&size=20&status={word}{extra}", headers=headers)
        assert response.status_code == 200, (word, response.get_json())
    bad = client.get(f"/api/v1/reports/{path}?page=1&size=20&status=maybe{extra}", headers=headers)
    assert bad.status_code == 422 and bad.get_json()["code"]


def test_deposit_and_transfer_rows_show_the_objects_own_status_and_filter_by_it(client, tree):  # noqa: F811
    from datetime import datetime
    from decimal import Decimal

    from crm_app.deposits.models import Deposit
    from crm_app.extensions import db
    from crm_app.funding.models import DepositChannel
    from crm_app.transfers.models import Transfer

    channel = DepositChannel(method="bank_transfer", name="Bank", min_amount=Decimal("1"), max_amount=Decimal("9999"))
    db.session.add(channel)
    db.session.commit()
    carol, headers = tree["carol"]
    when = datetime(2026, 11, 20, 8, 0, 0)
    # Approved by the back office, the credit still on its way: the client's list says processing.
    deposit = add_deposit(carol, tree["book"], channel, "100.00", "approved", when)
    transfer = add_transfer(carol, tree["book"], "10.00", "approved", when)
    db.session.get(Deposit, deposit.id).status = "processing"
    db.session.get(Transfer, transfer.id).status = "processing"
    db.session.commit()

    own_deposit = client.get("/api/v1/client/deposits?page=1&size=20", headers=headers).get_json()["list"][0]
    own_transfer = client.get("/api/v1/client/transfers?page=1&size=20", headers=headers).get_json()["list"][0]
    for path, own in (("deposits", own_deposit), ("transfers", own_transfer)):
        row = client.get(f"/api/v1/reports/{path}?page=1&size=20&status=all", headers=headers).get_json()["list"][0]
        assert row["status"] == own["status"] == "processing"
        same = client.get(f"/api/v1/reports/{path}?page=1&size=20&status=processing", headers=headers).get_json()
        assert [item["order_number"] for item in same["list"]] == [own["order_number"]]
        assert (
            client.get(f"/api/v1/reports/{path}?page=1&size=20&status=approved", headers=headers).get_json()["total"]
            == 0
        )
