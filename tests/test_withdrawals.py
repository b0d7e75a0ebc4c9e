"""Withdrawals against the MT simulator: the money leaves at once, exactly once, and comes
back once if rejected; the client's figures are checked, never trusted."""

import threading
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import func, select

from crm_app.admin.models import AuditLog
from crm_app.extensions import db
from crm_app.money.models import BalanceOperation
from crm_app.review.models import ReviewItem
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import gateway_for
from crm_app.withdrawals.models import Withdrawal
from tests.support.money import add_currencies, open_live_account, verified_client
from tests.support.trading import open_demo, open_live

BANK_INFO = {
    "account_holder_name": "Ann Client",
    "bank_country": "GB",
    "bank_name": "Demo Bank",
    "bank_no": "GB33BUKB20201555555555",
    "branch_name": "City",
    "bsc_code": "20-20-15",
}
TRC20_WALLET = "T" + "A" * 33


@pytest.fixture
def no_email_code(ctx):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"withdrawal": False}})


def add_channel(client, headers, **values):
    body = {
        "method": "bank_transfer",
        "name": "Bank transfer (USD)",
        "icon_url": "https://cdn.example.test/bank.png",
        "allowed_currencies": ["USD"],
        "min_amount": "10.00",
        "max_amount": "5000.00",
        **values,
    }
    response = client.post("/api/v1/admin/withdrawal-channels", headers=headers, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def fund(account_id, amount):
    account = db.session.get(TradingAccount, account_id)
    gateway_for(account.server).balance_operation(account.login, Decimal(amount), f"DEP#seed{account.login}")


@pytest.fixture
def desk(client, factory, book, no_email_code):
    """A verified client with one live account holding 1000.00, a bank channel (fee 5.00, no
    conversion) and a crypto channel (fee 1%, USDT at 1.01)."""
    admin_headers = book["admin_headers"]
    add_currencies(client, admin_headers)
    bank = add_channel(client, admin_headers, fee_fixed="5.00")
    crypto = add_channel(
        client,
        admin_headers,
        method="cryptocurrency",
        name="USDT (TRC20)",
        allowed_currencies=["USDT"],
        fee_percent="1",
        exchange_rate_source="fixed",
        exchange_rates={"USDT": "1.01"},
    )
    user, headers = verified_client(client, factory)  # KYC approved as Ann Client
    account_id = open_live_account(client, headers, book)
    fund(account_id, "1000.00")
    return {
        "user": user,
        "headers": headers,
        "account": account_id,
        "bank": bank,
        "crypto": crypto,
        "book": book,
        "admin_headers": admin_headers,
    }


def cents(value):
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def bank_body(desk, amount="100.00", **overrides):
    """What a correct client sends: fee 5.00, rate 1, remittance = amount - 5."""
    remittance = cents(Decimal(amount) - Decimal("5.00"))
    return {
        "method": "bank_transfer",
        "remittance_id": desk["bank"]["id"],
        "trading_account_id": desk["account"],
        "withdrawal_amount": amount,
        "fee": "5.00",
        "exchange_rate": "1",
        "remittance_amount": f"{remittance:.2f}",
        "currency": "USD",
        "remark": "rent",
        "bank_transfer_info": BANK_INFO,
        **overrides,
    }


def withdraw(client, desk, body, headers=None):
    return client.post("/api/v1/client/withdrawals", headers={**desk["headers"], **(headers or {})}, json=body)


def server_balance(account_id):
    account = db.session.get(TradingAccount, account_id)
    return gateway_for(account.server).trade_state(account.login).balance


def history(client, desk, query=""):
    response = client.get(f"/api/v1/client/withdrawals{query}", headers=desk["headers"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def count(model, *where):
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def withdrawal_items():
    """Review items of withdrawals (the client's KYC and live account have their own)."""
    return count(ReviewItem, ReviewItem.type == "withdrawal")


def operations():
    db.session.expire_all()
    return [
        (op.kind, op.amount, op.state)
        for op in db.session.scalars(select(BalanceOperation).order_by(BalanceOperation.id))
    ]


def audit_actions():
    db.session.expire_all()
    return db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()


def test_withdrawal_takes_the_money_at_once_and_approval_marks_it_paid(client, desk):
    response = withdraw(client, desk, bank_body(desk))
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["order_number"].startswith("WD") and answer["status"] == "auditing"
    assert server_balance(desk["account"]) == Decimal("900.00")
    assert operations() == [("WDR", Decimal("-100.00"), "done")]

    row = history(client, desk)["list"][0]
    assert row["order_number"] == answer["order_number"] and row["status"] == "auditing"
    assert (row["amount"], row["fee"], row["remittance_amount"], row["currency"]) == ("100.00", "5.00", "95.00", "USD")
    assert row["client_remark"] == "rent" and row["remark"] == ""
    assert row["remittance_name"] == "Bank transfer (USD)" and row["icon"] == "https://cdn.example.test/bank.png"
    assert row["source_trading_account"]["id"] == desk["account"]
    assert row["source_trading_account"]["server_name"] == "Live MT5"
    assert row["bank_transfer_info"]["bank_no"] == BANK_INFO["bank_no"]  # the owner sees it in full
    assert row["cryptocurrency_info"] is None and row["international_wire_info"] is None

    audit = client.get(f"/api/v1/admin/audits/{answer['audit_id']}", headers=desk["admin_headers"]).get_json()
    assert audit["type"] == "withdrawal" and audit["status"] == "pending"
    assert audit["object"]["bank_transfer_info"]["bank_no"] == "****5555"  # masked for the back office
    stored = db.session.scalar(select(Withdrawal.payout_details_encrypted))
    assert BANK_INFO["bank_no"] not in stored and "Ann Client" not in stored

    approved = client.post(
        f"/api/v1/admin/audits/{answer['audit_id']}/approve",
        headers=desk["admin_headers"],
        json={"remark": "paid, wire ref 42"},
    )
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["object"]["status"] == "approved"
    assert server_balance(desk["account"]) == Decimal("900.00")  # approval moves no money
    assert operations() == [("WDR", Decimal("-100.00"), "done")]
    row = history(client, desk)["list"][0]
    assert row["status"] == "approved" and row["remark"] == "paid, wire ref 42"
    again = client.post(f"/api/v1/admin/audits/{answer['audit_id']}/approve", headers=desk["admin_headers"], json={})
    assert again.status_code == 409
    actions = audit_actions()
    for action in ("withdrawal.create", "withdrawal.held", "withdrawal.approve", "review.withdrawal.approve"):
        assert action in actions


def test_rejected_withdrawal_is_refunded_on_the_trading_server(client, desk):
    answer = withdraw(client, desk, bank_body(desk, "400.00")).get_json()
    assert server_balance(desk["account"]) == Decimal("600.00")
    url = f"/api/v1/admin/audits/{answer['audit_id']}/reject"
    rejected = client.post(url, headers=desk["admin_headers"], json={"remark": "name does not match KYC"})
    assert rejected.status_code == 200, rejected.get_json()
    assert rejected.get_json()["object"]["status"] == "disapproved"
    assert server_balance(desk["account"]) == Decimal("1000.00")
    assert operations() == [("WDR", Decimal("-400.00"), "done"), ("REF", Decimal("400.00"), "done")]
    row = history(client, desk)["list"][0]
    assert row["status"] == "disapproved" and row["remark"] == "name does not match KYC"
    assert {"withdrawal.reject", "withdrawal.refunded"} <= set(audit_actions())


def test_crypto_withdrawal_converts_with_half_up_rounding_and_can_use_a_payout_account(client, desk):
    created = client.post(
        "/api/v1/client/payment-accounts",
        headers=desk["headers"],
        json={
            "payment_method": "cryptocurrency",
            "cryptocurrency_info": {"network": "TRC20", "wallet_address": TRC20_WALLET},
        },
    )
    assert created.status_code == 201, created.get_json()
    # 1% of 100.50 is 1.005: 1.01 half-up; (100.50 - 1.01) x 1.01 = 100.4849: 100.48.
    body = {
        "method": "cryptocurrency",
        "remittance_id": desk["crypto"]["id"],
        "trading_account_id": desk["account"],
        "withdrawal_amount": "100.50",
        "fee": "1.01",
        "exchange_rate": "1.01",
        "remittance_amount": "100.48",
        "currency": "USDT",
        "payment_account_id": created.get_json()["id"],
    }
    response = withdraw(client, desk, body)
    assert response.status_code == 201, response.get_json()
    assert server_balance(desk["account"]) == Decimal("899.50")
    row = history(client, desk)["list"][0]
    assert row["cryptocurrency_info"] == {"currency": "USDT", "network": "TRC20", "wallet_address": TRC20_WALLET}
    assert (row["exchange_rate"], row["remittance_amount"], row["currency"]) == ("1.010000", "100.48", "USDT")

    other = client.post(
        "/api/v1/client/payment-accounts",
        headers=desk["headers"],
        json={
            "payment_method": "bank_transfer",
            "bank_transfer_info": {k: v for k, v in BANK_INFO.items() if k != "account_holder_name"},
        },
    ).get_json()["id"]
    wrong_method = withdraw(client, desk, {**body, "payment_account_id": other})
    assert wrong_method.status_code == 422 and "payment_account_id" in wrong_method.get_json()["errors"]


def test_figures_that_disagree_with_the_server_are_422_naming_the_expected_ones(client, desk):
    response = withdraw(client, desk, bank_body(desk, fee="4.00", exchange_rate="1.10", remittance_amount="96.00"))
    assert response.status_code == 422
    answer = response.get_json()
    assert answer["code"] == "quote_mismatch"
    assert answer["errors"] == {
        "fee": ["Expected 5.00"],
        "exchange_rate": ["Expected 1"],
        "remittance_amount": ["Expected 95.00"],
    }
    only_remittance = withdraw(client, desk, bank_body(desk, remittance_amount="95.01")).get_json()
    assert only_remittance["errors"] == {"remittance_amount": ["Expected 95.00"]}
    # Equal numbers written differently are the same figures.
    assert withdraw(client, desk, bank_body(desk, fee="5", exchange_rate="1.000000")).status_code == 201
    assert count(Withdrawal) == 1 and withdrawal_items() == 1
    assert operations() == [("WDR", Decimal("-100.00"), "done")]


def test_nothing_is_written_when_a_withdrawal_is_refused(client, desk):
    assert withdraw(client, desk, bank_body(desk, fee="0.00")).status_code == 422
    assert withdraw(client, desk, bank_body(desk, "5.00")).status_code == 422
    assert count(Withdrawal) == withdrawal_items() == count(BalanceOperation) == 0
    assert server_balance(desk["account"]) == Decimal("1000.00")


@pytest.mark.parametrize("amount", ["9.99", "5000.01"])
def test_amount_outside_the_channel_limits_is_422(client, desk, amount):
    response = withdraw(client, desk, bank_body(desk, amount))
    assert response.status_code == 422
    assert response.get_json()["code"] == "amount_out_of_range"
    assert response.get_json()["errors"] == {"withdrawal_amount": ["Must be between 10.00 and 5000.00."]}


def test_more_than_the_balance_is_422_with_the_available_amount(client, desk):
    response = withdraw(client, desk, bank_body(desk, "1000.01"))
    assert response.status_code == 422
    answer = response.get_json()
    assert answer["code"] == "insufficient_funds"
    assert "1000.00 USD" in answer["message"] and "1000.00 USD" in answer["errors"]["withdrawal_amount"][0]
    assert count(Withdrawal) == count(BalanceOperation) == 0
    assert withdraw(client, desk, bank_body(desk, "1000.00")).status_code == 201
    assert server_balance(desk["account"]) == Decimal("0.00")


def test_margin_held_by_an_open_position_cannot_be_withdrawn(client, desk, sim):
    account = db.session.get(TradingAccount, desk["account"])
    sim.control("POST", "/sim/trades", {"login": account.login, "symbol": "XAUUSD", "side": "BUY", "volume": "0.20"})
    state = gateway_for(account.server).trade_state(account.login)
    assert Decimal("0") < state.margin_free < Decimal("900.00")
    response = withdraw(client, desk, bank_body(desk, "900.00"))
    assert response.status_code == 422 and response.get_json()["code"] == "insufficient_funds"
    assert "free margin" in response.get_json()["message"]
    assert server_balance(desk["account"]) == Decimal("1000.00")
    assert withdraw(client, desk, bank_body(desk, "100.00")).status_code == 201


def test_server_refusing_the_debit_fails_the_withdrawal_and_closes_its_review(client, desk, monkeypatch):
    # The CRM's own check passes (as if the margin changed in between); the server says no money.
    monkeypatch.setattr("crm_app.money.services.available_to_take", lambda account: Decimal("1000000"))
    response = withdraw(client, desk, bank_body(desk, "2000.00"))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["status"] == "failed"
    assert server_balance(desk["account"]) == Decimal("1000.00")
    item = db.session.get(ReviewItem, response.get_json()["audit_id"])
    db.session.refresh(item)
    assert item.status == "disapproved" and item.remark == "the trading account could not pay"
    row = history(client, desk)["list"][0]
    assert row["status"] == "failed" and "could not pay" in row["failure_reason"]
    assert "withdrawal.failed" in audit_actions()


def test_a_refund_the_server_refuses_stays_visible_for_manual_action(client, desk, monkeypatch):
    from crm_app.integrations.trading import gateway as gw
    from crm_app.money import services as money

    answer = withdraw(client, desk, bank_body(desk, "300.00")).get_json()
    real_gateway = money._gateway

    class RefusesCredits:
        def __init__(self, inner):
            self.inner = inner

        def balance_operation(self, login, amount, comment, credit=False):
            if amount > 0:
                raise gw.InvalidRequest("account disabled")
            return self.inner.balance_operation(login, amount, comment, credit)

    monkeypatch.setattr(money, "_gateway", lambda operation: RefusesCredits(real_gateway(operation)))
    url = f"/api/v1/admin/audits/{answer['audit_id']}/reject"
    assert client.post(url, headers=desk["admin_headers"], json={"remark": "fraud check"}).status_code == 200
    row = history(client, desk)["list"][0]
    assert row["status"] == "failed" and row["failure_reason"].startswith("REFUND FAILED, needs manual action")
    assert server_balance(desk["account"]) == Decimal("700.00")
    assert "withdrawal.refund_failed" in audit_actions()


def test_another_clients_trading_account_or_payout_account_is_404(client, factory, desk, book):
    other_headers = factory.headers(client, factory.user())
    other_account = open_demo(client, other_headers, book).get_json()["id"]
    fund(other_account, "500.00")
    response = withdraw(client, desk, bank_body(desk, trading_account_id=other_account))
    assert response.status_code == 404 and "trading_account_id" in response.get_json()["errors"]
    other_payout = client.post(
        "/api/v1/client/payment-accounts",
        headers=other_headers,
        json={
            "payment_method": "bank_transfer",
            "bank_transfer_info": {k: v for k, v in BANK_INFO.items() if k != "account_holder_name"},
        },
    ).get_json()["id"]
    body = bank_body(desk, payment_account_id=other_payout)
    del body["bank_transfer_info"]
    assert withdraw(client, desk, body).status_code == 404
    assert server_balance(other_account) == Decimal("500.00")
    assert count(Withdrawal) == 0


def test_an_account_type_that_allows_no_withdrawals_is_422(client, desk, book):
    # The book's own live type takes deposits only.
    account_id = open_live(client, desk["headers"], book)
    fund(account_id, "500.00")
    refused = withdraw(client, desk, bank_body(desk, trading_account_id=account_id))
    assert refused.status_code == 422 and refused.get_json()["code"] == "withdrawals_not_allowed"
    assert server_balance(account_id) == Decimal("500.00")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"method": "cryptocurrency"}, "method"),  # the channel is a bank channel
        ({"bank_transfer_info": None}, "bank_transfer_info"),
        ({"cryptocurrency_info": {"network": "TRC20", "wallet_address": TRC20_WALLET}}, "cryptocurrency_info"),
        ({"bank_transfer_info": {**BANK_INFO, "bank_no": "x"}}, "bank_transfer_info"),
        ({"currency": "EUR"}, "currency"),
        ({"currency": "USDT"}, "currency"),
        ({"remittance_id": 999999}, "remittance_id"),
        ({"withdrawal_amount": "10.001"}, "withdrawal_amount"),
        ({"withdrawal_amount": "5.00", "remittance_amount": "0.00"}, "withdrawal_amount"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_withdrawal_is_422(client, desk, overrides, field):
    body = bank_body(desk, **overrides)
    if body["method"] == "cryptocurrency":
        body["cryptocurrency_info"] = {"network": "TRC20", "wallet_address": TRC20_WALLET}
        del body["bank_transfer_info"]
    response = withdraw(client, desk, body)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"], response.get_json()
    assert count(Withdrawal) == 0


def test_email_code_is_required_when_the_broker_asks(client, desk, smtp_sink, run_jobs, factory):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"withdrawal": True}})
    missing = withdraw(client, desk, bank_body(desk))
    assert missing.status_code == 422 and missing.get_json()["code"] == "email_code_required"
    wrong = withdraw(client, desk, bank_body(desk, email_code="000000"))
    assert wrong.status_code == 422
    code = factory.email_code(client, smtp_sink, run_jobs, desk["user"].email, "withdrawal")
    assert withdraw(client, desk, bank_body(desk, email_code=code)).status_code == 201
    reused = withdraw(client, desk, bank_body(desk, email_code=code))
    assert reused.status_code == 422 and reused.get_json()["code"] == "email_code_invalid"
    assert server_balance(desk["account"]) == Decimal("900.00")


def test_same_idempotency_key_replays_and_another_body_conflicts(client, desk):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = withdraw(client, desk, bank_body(desk), headers=key)
    replay = withdraw(client, desk, bank_body(desk), headers=key)
    assert first.status_code == replay.status_code == 201
    assert replay.get_json() == first.get_json()
    assert replay.headers.get("Idempotency-Replayed") == "true"
    other = withdraw(client, desk, bank_body(desk, "200.00"), headers=key)
    assert other.status_code == 409 and other.get_json()["code"] == "idempotency_key_reused"
    assert count(Withdrawal) == 1
    assert server_balance(desk["account"]) == Decimal("900.00")


def test_two_requests_with_one_key_at_once_take_the_money_once(app, desk):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    statuses = []

    def send():
        statuses.append(withdraw(app.test_client(), desk, bank_body(desk), headers=key).status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) in ([201, 201], [201, 409])
    assert count(Withdrawal) == 1
    assert server_balance(desk["account"]) == Decimal("900.00")


def test_fifty_concurrent_withdrawals_never_take_more_than_the_free_margin(app, desk):
    """1000.00 free, 50 requests of 30.00 at once: 33 pass, and the server shows exactly that."""
    statuses = []
    lock = threading.Lock()

    def send():
        status = withdraw(app.test_client(), desk, bank_body(desk, "30.00")).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=send) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) <= {201, 422}, statuses
    assert statuses.count(201) == 33
    taken = -db.session.scalar(
        select(func.sum(BalanceOperation.amount)).where(
            BalanceOperation.kind == "WDR", BalanceOperation.state == "done"
        )
    )
    assert taken == Decimal("990.00")
    assert server_balance(desk["account"]) == Decimal("1000.00") - taken
    assert count(Withdrawal) == 33
    assert db.session.scalar(select(func.count()).where(Withdrawal.status == "auditing")) == 33


def test_lost_answer_is_settled_by_the_reconciler_without_taking_twice(client, desk, sim, ctx):
    from crm_app.money.services import reconcile_open_operations

    sim.faults(lost_answer_rate=1, paths=["trade/balance"])
    try:
        answer = withdraw(client, desk, bank_body(desk, "250.00")).get_json()
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert answer["status"] == "processing"
    assert history(client, desk)["list"][0]["status"] == "processing"
    # The debit is in flight: it cannot be approved yet, and it counts against what is left.
    early = client.post(f"/api/v1/admin/audits/{answer['audit_id']}/approve", headers=desk["admin_headers"], json={})
    assert early.status_code == 422 and early.get_json()["code"] == "withdrawal_not_ready"
    second = withdraw(client, desk, bank_body(desk, "800.00"))
    assert second.status_code == 422 and second.get_json()["code"] == "insufficient_funds"

    for _ in range(3):
        reconcile_open_operations(grace_seconds=0)
    db.session.expire_all()
    assert db.session.scalar(select(Withdrawal.status)) == "auditing"
    assert server_balance(desk["account"]) == Decimal("750.00")
    assert operations() == [("WDR", Decimal("-250.00"), "done")]

    retried = client.post(f"/api/v1/admin/audits/{answer['audit_id']}/approve", headers=desk["admin_headers"], json={})
    assert retried.status_code == 200, retried.get_json()
    assert retried.get_json()["object"]["status"] == "approved"
    assert server_balance(desk["account"]) == Decimal("750.00")


def test_history_is_own_rows_newest_first_with_time_filters(client, factory, desk, book):
    first = withdraw(client, desk, bank_body(desk, "50.00")).get_json()
    second = withdraw(client, desk, bank_body(desk, "60.00")).get_json()
    _, other_headers = verified_client(client, factory)
    other_account = open_live_account(client, other_headers, book)
    fund(other_account, "100.00")
    other = {**desk, "headers": other_headers, "account": other_account}
    assert withdraw(client, other, bank_body(other, "20.00")).status_code == 201

    listed = history(client, desk)
    assert listed["total"] == 2
    assert [row["order_number"] for row in listed["list"]] == [second["order_number"], first["order_number"]]
    paged = history(client, desk, "?page=2&size=1")
    assert paged["total"] == 2 and [row["order_number"] for row in paged["list"]] == [first["order_number"]]
    assert history(client, desk, "?start_time=2000-01-01%2000:00:00&end_time=2000-01-02%2000:00:00")["total"] == 0
    assert history(client, desk, "?start_time=2000-01-01%2000:00:00")["total"] == 2
    assert client.get("/api/v1/client/withdrawals?start_time=yesterday", headers=desk["headers"]).status_code == 422


def test_withdrawals_need_a_client_token(client, desk):
    assert client.get("/api/v1/client/withdrawals").status_code == 401
    assert client.post("/api/v1/client/withdrawals", json=bank_body(desk)).status_code == 401
    admin_headers = desk["admin_headers"]
    assert client.get("/api/v1/client/withdrawals", headers=admin_headers).status_code == 403
    assert client.post("/api/v1/client/withdrawals", headers=admin_headers, json=bank_body(desk)).status_code == 403


def test_a_channel_without_an_exchange_rate_pays_only_the_accounts_currency(client, desk):
    channel = add_channel(
        client, desk["admin_headers"], name="Bank, two currencies", allowed_currencies=["USD", "USDT"]
    )
    response = withdraw(
        client,
        desk,
        bank_body(desk, remittance_id=channel["id"], currency="USDT", fee="0.00", remittance_amount="100.00"),
    )
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"currency": ["This channel pays out in the account's currency, USD."]}
    answer = withdraw(
        client, desk, bank_body(desk, remittance_id=channel["id"], fee="0.00", remittance_amount="100.00")
    )
    assert answer.status_code == 201, answer.get_json()
