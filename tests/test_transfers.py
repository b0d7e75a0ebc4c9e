"""Internal transfers against the MT simulator: money moves once, whatever fails."""

import threading
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_app.extensions import db
from crm_app.money.models import BalanceOperation
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import gateway_for
from crm_app.transfers.models import Transfer
from tests.support.money import fund, open_live_account, verified_client
from tests.support.trading import open_demo


@pytest.fixture
def no_email_code(ctx):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"transfer": False}})


@pytest.fixture
def two_accounts(client, factory, book, no_email_code):
    """A verified client with two live accounts (money moves only between live ones); the first holds 1000.00."""
    user, headers = verified_client(client, factory)
    source_id = open_live_account(client, headers, book)
    target_id = open_live_account(client, headers, book)
    fund(source_id, "1000.00")
    return {"user": user, "headers": headers, "source": source_id, "target": target_id, "book": book}


def server_balance(account_id):
    account = db.session.get(TradingAccount, account_id)
    return gateway_for(account.server).trade_state(account.login).balance


def transfer(client, accounts, amount, **extra):
    body = {
        "amount": amount,
        "remark": "rebalance",
        "source_trading_account_id": accounts["source"],
        "target_trading_account_id": accounts["target"],
    }
    headers = {**accounts["headers"], **extra.pop("headers", {})}
    return client.post("/api/v1/client/transfers", headers=headers, json={**body, **extra})


def test_small_transfer_is_approved_at_once_and_moves_the_money(client, two_accounts):
    response = transfer(client, two_accounts, "250.00")
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["audit_status"] == "approved" and answer["status"] == "approved"
    assert server_balance(two_accounts["source"]) == Decimal("750.00")
    assert server_balance(two_accounts["target"]) == Decimal("250.00")

    history = client.get("/api/v1/client/transfers", headers=two_accounts["headers"]).get_json()
    assert history["total"] == 1
    row = history["list"][0]
    assert row["amount"] == "250.00" and row["status"] == "approved" and row["audit_id"] == answer["audit_id"]
    assert row["source_trading_account"]["id"] == two_accounts["source"]
    operations = db.session.scalars(select(BalanceOperation).order_by(BalanceOperation.id)).all()
    assert [(op.kind, op.amount, op.state) for op in operations] == [
        ("TRO", Decimal("-250.00"), "done"),
        ("TRI", Decimal("250.00"), "done"),
    ]
    assert all(op.ticket for op in operations)


def test_large_transfer_waits_for_review_with_the_money_already_held(client, two_accounts, monkeypatch, app):
    monkeypatch.setitem(app.config, "TRANSFER_AUTO_APPROVE_MAX", "100.00")
    answer = transfer(client, two_accounts, "400.00").get_json()
    assert answer["audit_status"] == "pending" and answer["status"] == "auditing"
    assert server_balance(two_accounts["source"]) == Decimal("600.00")
    assert server_balance(two_accounts["target"]) == Decimal("0.00")

    admin_headers = two_accounts["book"]["admin_headers"]
    approved = client.post(f"/api/v1/admin/audits/{answer['audit_id']}/approve", headers=admin_headers, json={})
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["object"]["status"] == "approved"
    assert server_balance(two_accounts["target"]) == Decimal("400.00")
    again = client.post(f"/api/v1/admin/audits/{answer['audit_id']}/approve", headers=admin_headers, json={})
    assert again.status_code == 409
    assert server_balance(two_accounts["target"]) == Decimal("400.00")


def test_rejected_transfer_gives_the_money_back(client, two_accounts, monkeypatch, app):
    monkeypatch.setitem(app.config, "TRANSFER_AUTO_APPROVE_MAX", "100.00")
    answer = transfer(client, two_accounts, "400.00").get_json()
    admin_headers = two_accounts["book"]["admin_headers"]
    no_remark = client.post(f"/api/v1/admin/audits/{answer['audit_id']}/reject", headers=admin_headers, json={})
    assert no_remark.status_code == 422
    rejected = client.post(
        f"/api/v1/admin/audits/{answer['audit_id']}/reject", headers=admin_headers, json={"remark": "documents missing"}
    )
    assert rejected.status_code == 200, rejected.get_json()
    assert rejected.get_json()["object"]["status"] == "disapproved"
    assert server_balance(two_accounts["source"]) == Decimal("1000.00")
    assert server_balance(two_accounts["target"]) == Decimal("0.00")


def test_more_than_free_margin_is_422_and_writes_nothing(client, two_accounts):
    response = transfer(client, two_accounts, "1000.01")
    assert response.status_code == 422
    assert response.get_json()["code"] == "insufficient_funds"
    assert "1000.00" in response.get_json()["errors"]["amount"][0]
    assert db.session.scalar(select(func.count()).select_from(Transfer)) == 0
    assert db.session.scalar(select(func.count()).select_from(BalanceOperation)) == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"amount": 5.5}, "amount"),
        ({"target_trading_account_id": "same"}, "target_trading_account_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_transfer_is_422(client, two_accounts, overrides, field):
    if overrides.get("target_trading_account_id") == "same":
        overrides = {"target_trading_account_id": two_accounts["source"]}
    response = transfer(client, two_accounts, overrides.pop("amount", "10.00"), **overrides)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]


def test_another_clients_account_is_404(client, factory, two_accounts, book):
    other_headers = factory.headers(client, factory.user())
    other_account = open_demo(client, other_headers, book).get_json()["id"]
    response = transfer(client, two_accounts, "10.00", target_trading_account_id=other_account)
    assert response.status_code == 404
    assert server_balance(two_accounts["source"]) == Decimal("1000.00")


def test_email_code_is_required_when_the_broker_asks(client, two_accounts, smtp_sink, run_jobs, factory):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"transfer": True}})
    missing = transfer(client, two_accounts, "10.00")
    assert missing.status_code == 422 and missing.get_json()["code"] == "email_code_required"
    code = factory.email_code(client, smtp_sink, run_jobs, two_accounts["user"].email, "transfer")
    assert transfer(client, two_accounts, "10.00", email_code=code).status_code == 201


def test_same_idempotency_key_replays_and_another_body_conflicts(client, two_accounts):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = transfer(client, two_accounts, "100.00", headers=key)
    replay = transfer(client, two_accounts, "100.00", headers=key)
    assert first.status_code == replay.status_code == 201
    assert replay.get_json() == first.get_json()
    assert replay.headers.get("Idempotency-Replayed") == "true"
    other = transfer(client, two_accounts, "200.00", headers=key)
    assert other.status_code == 409 and other.get_json()["code"] == "idempotency_key_reused"
    assert db.session.scalar(select(func.count()).select_from(Transfer)) == 1
    assert server_balance(two_accounts["source"]) == Decimal("900.00")


def test_two_requests_with_one_key_at_once_move_money_once(app, two_accounts):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    statuses = []

    def send():
        statuses.append(transfer(app.test_client(), two_accounts, "100.00", headers=key).status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) in ([201, 201], [201, 409])  # the second replays, or is refused while running
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Transfer)) == 1
    assert server_balance(two_accounts["source"]) == Decimal("900.00")


def test_concurrent_transfers_never_take_more_than_the_free_margin(app, two_accounts):
    statuses = []

    def send():
        statuses.append(transfer(app.test_client(), two_accounts, "300.00").status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(201) == 3, statuses
    assert set(statuses) <= {201, 422}
    assert server_balance(two_accounts["source"]) == Decimal("100.00")
    assert server_balance(two_accounts["target"]) == Decimal("900.00")


def test_lost_answer_is_settled_by_the_reconciler_without_paying_twice(client, two_accounts, sim, ctx):
    from crm_app.money.services import reconcile_open_operations

    sim.faults(lost_answer_rate=1, paths=["trade/balance"])
    try:
        answer = transfer(client, two_accounts, "250.00").get_json()
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert answer["status"] == "processing"
    history = client.get("/api/v1/client/transfers", headers=two_accounts["headers"]).get_json()
    assert history["list"][0]["status"] == "processing"

    for _ in range(3):
        reconcile_open_operations(grace_seconds=0)
    db.session.expire_all()
    row = db.session.scalar(select(Transfer))
    assert row.status == "approved"
    assert server_balance(two_accounts["source"]) == Decimal("750.00")
    assert server_balance(two_accounts["target"]) == Decimal("250.00")
    states = db.session.scalars(select(BalanceOperation.state)).all()
    assert states == ["done", "done"]


def test_transfers_need_a_client_token(client, two_accounts):
    assert client.get("/api/v1/client/transfers").status_code == 401
    admin_headers = two_accounts["book"]["admin_headers"]
    assert client.get("/api/v1/client/transfers", headers=admin_headers).status_code == 403
