"""Deposits end to end: draft, receipt, review, one credit on the MT simulator."""

import io
import threading
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_app.deposits.models import Deposit
from crm_app.extensions import db
from crm_app.money.models import BalanceOperation
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import gateway_for
from tests.support.money import verified_client
from tests.support.trading import open_live

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def funded(client, factory, book):
    """A verified client with a live account, a deposit channel (fee 1.00 + 1%), and a receipt upload."""
    client.post(
        "/api/v1/admin/currencies",
        headers=book["admin_headers"],
        json={"code": "USD", "name_en": "US Dollar", "name_zh": "美元", "methods": ["bank_transfer"]},
    )
    channel = client.post(
        "/api/v1/admin/deposit-channels",
        headers=book["admin_headers"],
        json={
            "method": "bank_transfer",
            "name": "Bank transfer (USD)",
            "account_info": "Demo Bank 123",
            "allowed_currencies": ["USD"],
            "min_amount": "50.00",
            "max_amount": "50000.00",
            "fee_fixed": "1.00",
            "fee_percent": "1",
            "pay_type": "bank_account",
            "pay_data": {"bank": "Demo Bank", "account": "123456789"},
        },
    )
    assert channel.status_code == 201, channel.get_json()
    user, headers = verified_client(client, factory)
    account_id = open_live(client, headers, book)  # deposits go into live accounts only
    upload = client.post(
        "/api/v1/uploads",
        headers=headers,
        data={"file": (io.BytesIO(PNG), "receipt.png")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201
    return {
        "user": user,
        "headers": headers,
        "account": account_id,
        "channel": channel.get_json()["id"],
        "receipt_url": upload.get_json()["url"],
        "admin_headers": book["admin_headers"],
    }


def draft(client, funded, amount="1000.00", **extra):
    headers = {**funded["headers"], **extra.pop("headers", {})}
    body = {
        "deposit_amount": amount,
        "remittance_id": funded["channel"],
        "trading_account_id": funded["account"],
        "remark": "from my bank",
        **extra,
    }
    return client.post("/api/v1/client/deposits", headers=headers, json=body)


def submit(client, funded, order_number, receipt_url=None):
    return client.post(
        "/api/v1/client/deposits/submit",
        headers=funded["headers"],
        json={"order_number": order_number, "receipt_url": receipt_url or funded["receipt_url"]},
    )


def server_balance(account_id):
    account = db.session.get(TradingAccount, account_id)
    return gateway_for(account.server).trade_state(account.login).balance


def review_item_of(client, funded, order_number):
    queue = client.get("/api/v1/admin/audits?type=deposit", headers=funded["admin_headers"]).get_json()
    return next(item for item in queue["list"] if item["object_ref"] == order_number)


def test_deposit_is_credited_once_after_approval(client, funded):
    created = draft(client, funded)
    assert created.status_code == 201, created.get_json()
    instructions = created.get_json()
    assert instructions["status"] == "draft" and instructions["pay_type"] == "bank_account"
    assert '"reference": "' + instructions["order_number"] in instructions["pay_data"]

    submitted = submit(client, funded, instructions["order_number"])
    assert submitted.status_code == 200 and submitted.get_json()["status"] == "auditing"
    item = review_item_of(client, funded, instructions["order_number"])
    assert item["status"] == "pending" and item["user"]["email"] == funded["user"].email

    detail = client.get(f"/api/v1/admin/audits/{item['id']}", headers=funded["admin_headers"]).get_json()
    assert detail["object"]["credited_amount"] == "989.00"  # 1000 - (1.00 + 1%)
    approved = client.post(f"/api/v1/admin/audits/{item['id']}/approve", headers=funded["admin_headers"], json={})
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["object"]["status"] == "approved"
    assert server_balance(funded["account"]) == Decimal("989.00")
    again = client.post(f"/api/v1/admin/audits/{item['id']}/approve", headers=funded["admin_headers"], json={})
    assert again.status_code == 409
    assert server_balance(funded["account"]) == Decimal("989.00")

    history = client.get("/api/v1/client/deposits", headers=funded["headers"]).get_json()
    assert history["total"] == 1
    row = history["list"][0]
    assert (row["amount"], row["fee"], row["status"], row["remittance_name"]) == (
        "1000.00",
        "11.00",
        "approved",
        "Bank transfer (USD)",
    )
    assert row["target_trading_account"]["id"] == funded["account"]
    operation = db.session.scalar(select(BalanceOperation))
    assert operation.kind == "DEP" and operation.state == "done" and operation.ticket


def test_rejected_deposit_credits_nothing(client, funded):
    order_number = draft(client, funded).get_json()["order_number"]
    submit(client, funded, order_number)
    item = review_item_of(client, funded, order_number)
    rejected = client.post(
        f"/api/v1/admin/audits/{item['id']}/reject",
        headers=funded["admin_headers"],
        json={"remark": "no money arrived"},
    )
    assert rejected.status_code == 200
    assert server_balance(funded["account"]) == Decimal("0.00")
    row = client.get("/api/v1/client/deposits", headers=funded["headers"]).get_json()["list"][0]
    assert row["status"] == "disapproved" and row["remark"] == "no money arrived"


@pytest.mark.parametrize(("amount", "code"), [("10.00", "amount_out_of_range"), ("60000.00", "amount_out_of_range")])
def test_amount_outside_the_channel_limits_is_422(client, funded, amount, code):
    response = draft(client, funded, amount)
    assert response.status_code == 422 and response.get_json()["code"] == code
    assert db.session.scalar(select(func.count()).select_from(Deposit)) == 0


def test_receipt_must_be_the_callers_own_upload(client, factory, funded):
    order_number = draft(client, funded).get_json()["order_number"]
    stranger = factory.headers(client, factory.user())
    their_upload = client.post(
        "/api/v1/uploads",
        headers=stranger,
        data={"file": (io.BytesIO(PNG), "x.png")},
        content_type="multipart/form-data",
    ).get_json()["url"]
    for url in (their_upload, "https://elsewhere.test/receipt.png"):
        response = submit(client, funded, order_number, receipt_url=url)
        assert response.status_code == 422 and "receipt_url" in response.get_json()["errors"]
    assert db.session.scalar(select(Deposit.status)) == "draft"


def test_another_clients_deposit_or_account_is_404(client, factory, funded, book):
    order_number = draft(client, funded).get_json()["order_number"]
    stranger = factory.user()
    stranger_headers = factory.headers(client, stranger)
    response = client.post(
        "/api/v1/client/deposits/submit",
        headers=stranger_headers,
        json={"order_number": order_number, "receipt_url": funded["receipt_url"]},
    )
    assert response.status_code == 404
    response = client.post(
        "/api/v1/client/deposits",
        headers=stranger_headers,
        json={"deposit_amount": "100.00", "remittance_id": funded["channel"], "trading_account_id": funded["account"]},
    )
    assert response.status_code == 404
    assert client.get("/api/v1/client/deposits", headers=stranger_headers).get_json()["total"] == 0


def test_expired_draft_cannot_be_submitted(client, funded, ctx):
    from crm_app.deposits.services import expire_stale_drafts

    order_number = draft(client, funded).get_json()["order_number"]
    deposit = db.session.scalar(select(Deposit))
    deposit.expires_at = deposit.created_at - timedelta(seconds=1)
    db.session.commit()
    assert expire_stale_drafts() == 1
    response = submit(client, funded, order_number)
    assert response.status_code == 409 and response.get_json()["code"] == "deposit_not_draft"


def test_draft_idempotency_key_replays_the_same_order(client, funded):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = draft(client, funded, headers=key)
    second = draft(client, funded, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json()
    assert db.session.scalar(select(func.count()).select_from(Deposit)) == 1
    assert draft(client, funded, "2000.00", headers=key).status_code == 409


def test_two_admins_approving_one_deposit_credit_once(app, client, factory, funded):
    order_number = draft(client, funded).get_json()["order_number"]
    submit(client, funded, order_number)
    item_id = review_item_of(client, funded, order_number)["id"]
    second_admin = factory.headers(client, factory.admin())
    statuses = []

    def approve(headers):
        statuses.append(
            app.test_client().post(f"/api/v1/admin/audits/{item_id}/approve", headers=headers, json={}).status_code
        )

    threads = [threading.Thread(target=approve, args=(h,)) for h in (funded["admin_headers"], second_admin)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409]
    assert server_balance(funded["account"]) == Decimal("989.00")


def test_lost_answer_on_the_credit_is_settled_once(client, funded, sim, ctx):
    from crm_app.money.services import reconcile_open_operations

    order_number = draft(client, funded).get_json()["order_number"]
    submit(client, funded, order_number)
    item_id = review_item_of(client, funded, order_number)["id"]
    sim.faults(lost_answer_rate=1, paths=["trade/balance"])
    try:
        approved = client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=funded["admin_headers"], json={})
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert approved.status_code == 200
    assert approved.get_json()["object"]["status"] == "processing"
    reconcile_open_operations(grace_seconds=0)
    reconcile_open_operations(grace_seconds=0)
    db.session.expire_all()
    assert db.session.scalar(select(Deposit.status)) == "approved"
    assert server_balance(funded["account"]) == Decimal("989.00")
    assert db.session.scalars(select(BalanceOperation.state)).all() == ["done"]


def test_transient_failure_is_retried_by_the_reconciler(client, funded, sim, ctx):
    from crm_app.money.services import reconcile_open_operations

    order_number = draft(client, funded).get_json()["order_number"]
    submit(client, funded, order_number)
    item_id = review_item_of(client, funded, order_number)["id"]
    sim.faults(error_rate=1, paths=["trade/balance"])
    try:
        approved = client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=funded["admin_headers"], json={})
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert approved.status_code == 200
    assert server_balance(funded["account"]) == Decimal("0.00")
    reconcile_open_operations(grace_seconds=0)
    db.session.expire_all()
    assert db.session.scalar(select(Deposit.status)) == "approved"
    assert server_balance(funded["account"]) == Decimal("989.00")


@pytest.mark.parametrize("expiry_answer", ["403", "retcode8"])
def test_a_session_dropped_between_two_deposits_credits_each_exactly_once(client, funded, sim, ctx, expiry_answer):
    """#13: the server forgets the manager session between two credits (answering HTTP 403 or
    retcode 8): the adapter logs in again and each deposit makes exactly one deal."""
    sim.sessions(session_expired_answer=expiry_answer)
    try:
        for amount in ("1000.00", "500.00"):
            order_number = draft(client, funded, amount=amount).get_json()["order_number"]
            submit(client, funded, order_number)
            item = review_item_of(client, funded, order_number)
            approved = client.post(
                f"/api/v1/admin/audits/{item['id']}/approve", headers=funded["admin_headers"], json={}
            )
            assert approved.status_code == 200, approved.get_json()
            assert approved.get_json()["object"]["status"] == "approved"
            sim.drop_sessions()
    finally:
        sim.sessions(session_expired_answer="403")
    assert server_balance(funded["account"]) == Decimal("989.00") + Decimal("494.00")
    operations = db.session.scalars(select(BalanceOperation).order_by(BalanceOperation.id)).all()
    assert [op.state for op in operations] == ["done", "done"]
    assert len({op.ticket for op in operations}) == 2
    account = db.session.get(TradingAccount, funded["account"])
    now = datetime.fromisoformat(sim.control("GET", "/sim/clock")["now"])
    gateway = gateway_for(account.server)
    deals = [d for d in gateway.iter_deals([account.login], now - timedelta(days=1), now) if d.action == "balance"]
    assert sorted(deal.ticket for deal in deals) == sorted(op.ticket for op in operations)
