"""Real money stays real: transfers, withdrawals and deposits move money only through
live accounts, withdrawals need approved KYC, and every review item shows the account's
server, login, demo flag and currency so a reviewer cannot be fooled."""

import io
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_app.deposits.models import Deposit
from crm_app.extensions import db
from crm_app.money.models import BalanceOperation
from crm_app.review.models import ReviewItem
from crm_app.transfers.models import Transfer
from crm_app.withdrawals.models import Withdrawal
from tests.support.money import fund, live_type, open_live_account, server_balance, verified_client
from tests.support.trading import open_demo

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
BANK_INFO = {
    "bank_country": "GB",
    "bank_name": "Demo Bank",
    "bank_no": "GB33BUKB20201555555555",
    "branch_name": "City",
    "bsc_code": "20-20-15",
}


def count(model, *where):
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def nothing_written():
    return (
        count(Transfer),
        count(Withdrawal),
        count(BalanceOperation),
        count(ReviewItem, ReviewItem.type.in_(("transfer", "withdrawal", "deposit"))),
    ) == (0, 0, 0, 0)


@pytest.fixture
def accounts(client, factory, book):
    """A verified client with a demo account holding 1000.00 and an empty live account."""
    user, headers = verified_client(client, factory)
    demo = open_demo(client, headers, book).get_json()["id"]
    fund(demo, "1000.00")
    live = open_live_account(client, headers, book)
    return {"user": user, "headers": headers, "demo": demo, "live": live, "book": book}


def audit(client, book, item_id):
    response = client.get(f"/api/v1/admin/audits/{item_id}", headers=book["admin_headers"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()["object"]


def assert_shows_account(shown, account_id, is_demo, server):
    """The review item names the account: its server (name and id), login, demo flag, currency."""
    from crm_app.trading.models import TradingAccount

    account = db.session.get(TradingAccount, account_id)
    assert shown["id"] == account_id and shown["login"] == account.login
    assert shown["server_id"] == server["id"] and shown["server_name"] == server["name"]
    assert shown["is_demo"] is is_demo and shown["currency"] == account.currency


# Transfers (item 1) ------------------------------------------------------------------


def transfer(client, accounts, source, target, amount="250.00", **extra):
    body = {
        "amount": amount,
        "remark": "move",
        "source_trading_account_id": source,
        "target_trading_account_id": target,
        **extra,
    }
    return client.post("/api/v1/client/transfers", headers=accounts["headers"], json=body)


def test_demo_profit_never_reaches_a_live_account(client, accounts, factory, smtp_sink, run_jobs):
    """Demo -> live is refused before the email code is used, anything is held or the
    trading server is called: both balances stay, no transfer, operation or review item."""
    code = factory.email_code(client, smtp_sink, run_jobs, accounts["user"].email, "transfer")
    response = transfer(client, accounts, accounts["demo"], accounts["live"], email_code=code)
    assert response.status_code == 422, response.get_json()
    answer = response.get_json()
    assert answer["code"] == "demo_account_not_allowed"
    assert list(answer["errors"]) == ["source_trading_account_id"]
    assert server_balance(accounts["demo"]) == Decimal("1000.00")
    assert server_balance(accounts["live"]) == Decimal("0.00")
    assert nothing_written()

    # The code was not consumed by the refused request: a legitimate transfer may still use it.
    fund(accounts["live"], "300.00")
    second_live = open_live_account(client, accounts["headers"], accounts["book"])
    ok = transfer(client, accounts, accounts["live"], second_live, "100.00", email_code=code)
    assert ok.status_code == 201, ok.get_json()
    assert server_balance(second_live) == Decimal("100.00")


def test_live_to_demo_is_refused_naming_the_target(client, accounts, factory):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"transfer": False}})
    fund(accounts["live"], "500.00")
    response = transfer(client, accounts, accounts["live"], accounts["demo"])
    assert response.status_code == 422
    assert response.get_json()["code"] == "demo_account_not_allowed"
    assert list(response.get_json()["errors"]) == ["target_trading_account_id"]
    assert server_balance(accounts["live"]) == Decimal("500.00")
    assert server_balance(accounts["demo"]) == Decimal("1000.00")
    assert nothing_written()


def test_two_live_accounts_in_different_currencies_are_refused(client, accounts):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"transfer": False}})
    fund(accounts["live"], "500.00")
    euro = open_live_account(client, accounts["headers"], accounts["book"], currency="EUR")
    response = transfer(client, accounts, accounts["live"], euro)
    assert response.status_code == 422
    assert response.get_json()["code"] == "currency_mismatch"
    assert "target_trading_account_id" in response.get_json()["errors"]
    assert server_balance(accounts["live"]) == Decimal("500.00")
    assert nothing_written()


def test_transfer_review_item_shows_both_accounts(client, accounts, monkeypatch, app):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"transfer": False}})
    monkeypatch.setitem(app.config, "TRANSFER_AUTO_APPROVE_MAX", "10.00")
    fund(accounts["live"], "500.00")
    target = open_live_account(client, accounts["headers"], accounts["book"])
    answer = transfer(client, accounts, accounts["live"], target, "50.00").get_json()
    shown = audit(client, accounts["book"], answer["audit_id"])
    live_server = accounts["book"]["live_server"]
    assert_shows_account(shown["source_trading_account"], accounts["live"], False, live_server)
    assert_shows_account(shown["target_trading_account"], target, False, live_server)
    assert shown["is_demo"] is False


# Withdrawals (item 2) ----------------------------------------------------------------


@pytest.fixture
def desk(client, accounts):
    """`accounts` plus a bank withdrawal channel (fee 5.00); no email codes; the live account holds 1000.00."""
    from crm_app.broker.services import update_setting
    from tests.support.money import add_currencies, add_withdrawal_channel

    update_setting("broker", {"email_code_required": {"withdrawal": False, "transfer": False}})
    add_currencies(client, accounts["book"]["admin_headers"])
    fund(accounts["live"], "1000.00")
    return {**accounts, "bank": add_withdrawal_channel(client, accounts["book"]["admin_headers"])}


def withdraw(client, desk, account_id, headers=None, **overrides):
    from tests.support.money import withdrawal_body

    body = withdrawal_body(desk["bank"]["id"], account_id, info=BANK_INFO, **overrides)
    return client.post("/api/v1/client/withdrawals", headers=headers or desk["headers"], json=body)


def test_withdrawal_from_a_demo_account_is_refused_and_holds_nothing(client, desk):
    response = withdraw(client, desk, desk["demo"])
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "demo_account_not_allowed"
    assert list(response.get_json()["errors"]) == ["trading_account_id"]
    assert server_balance(desk["demo"]) == Decimal("1000.00")
    assert nothing_written()


def test_withdrawal_needs_approved_kyc(client, factory, desk, kyc_approved):
    """A live account but KYC never approved (the account was opened while KYC was waived)."""
    from tests.support.trading import open_live

    user = factory.user()
    headers = factory.headers(client, user)
    account_id = open_live(client, headers, desk["book"], live_type(client, desk["book"], "Live Normal USD"))
    fund(account_id, "500.00")
    response = withdraw(client, desk, account_id, headers=headers)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "kyc_required"
    assert server_balance(account_id) == Decimal("500.00")
    assert nothing_written()


def test_withdrawal_review_item_shows_the_account_and_the_payee(client, desk):
    answer = withdraw(client, desk, desk["live"]).get_json()
    shown = audit(client, desk["book"], answer["audit_id"])
    assert_shows_account(shown["trading_account"], desk["live"], False, desk["book"]["live_server"])
    assert shown["is_demo"] is False and shown["login"] == shown["trading_account"]["login"]
    assert shown["payee_name"] == "Ann Client" and shown["kyc_legal_name"] == "Ann Client"
    assert shown["payee_matches_kyc"] is True


def test_a_demo_withdrawal_already_in_the_queue_cannot_be_paid(client, desk, monkeypatch):
    """Defence in depth: a demo withdrawal queued before the rule existed is refused on
    approval (the money stays held), and rejecting it gives the money back."""
    from crm_app.withdrawals import services as withdrawals

    with monkeypatch.context() as before_the_rule:
        before_the_rule.setattr(withdrawals, "require_live_account", lambda account, field: None)
        answer = withdraw(client, desk, desk["demo"]).get_json()
    assert server_balance(desk["demo"]) == Decimal("900.00")
    shown = audit(client, desk["book"], answer["audit_id"])
    assert shown["is_demo"] is True and shown["trading_account"]["is_demo"] is True
    assert shown["trading_account"]["server_name"] == desk["book"]["demo_server"]["name"]

    url = f"/api/v1/admin/audits/{answer['audit_id']}"
    approved = client.post(f"{url}/approve", headers=desk["book"]["admin_headers"], json={})
    assert approved.status_code == 422, approved.get_json()
    assert approved.get_json()["code"] == "demo_account_not_allowed"
    assert db.session.scalar(select(Withdrawal.status)) == "auditing"
    rejected = client.post(f"{url}/reject", headers=desk["book"]["admin_headers"], json={"remark": "demo account"})
    assert rejected.status_code == 200, rejected.get_json()
    assert server_balance(desk["demo"]) == Decimal("1000.00")


# Deposits (item 2) -------------------------------------------------------------------


@pytest.fixture
def deposit_desk(client, accounts):
    headers = accounts["book"]["admin_headers"]
    client.post(
        "/api/v1/admin/currencies",
        headers=headers,
        json={"code": "USD", "name_en": "US Dollar", "name_zh": "美元", "methods": ["bank_transfer"]},
    )
    channel = client.post(
        "/api/v1/admin/deposit-channels",
        headers=headers,
        json={
            "method": "bank_transfer",
            "name": "Bank transfer (USD)",
            "account_info": "Demo Bank 123",
            "allowed_currencies": ["USD"],
            "min_amount": "50.00",
            "max_amount": "50000.00",
            "pay_type": "bank_account",
        },
    )
    assert channel.status_code == 201, channel.get_json()
    upload = client.post(
        "/api/v1/uploads",
        headers=accounts["headers"],
        data={"file": (io.BytesIO(PNG), "receipt.png")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201
    return {**accounts, "channel": channel.get_json()["id"], "receipt_url": upload.get_json()["url"]}


def deposit(client, desk, account_id):
    """Draft and submit; the draft's answer when it is refused."""
    body = {"deposit_amount": "100.00", "remittance_id": desk["channel"], "trading_account_id": account_id}
    drafted = client.post("/api/v1/client/deposits", headers=desk["headers"], json=body)
    if drafted.status_code != 201:
        return drafted
    return client.post(
        "/api/v1/client/deposits/submit",
        headers=desk["headers"],
        json={"order_number": drafted.get_json()["order_number"], "receipt_url": desk["receipt_url"]},
    )


def deposit_item(client, desk):
    queue = client.get("/api/v1/admin/audits?type=deposit", headers=desk["book"]["admin_headers"]).get_json()
    return queue["list"][0]["id"]


def test_deposit_into_a_demo_account_is_refused(client, deposit_desk):
    response = deposit(client, deposit_desk, deposit_desk["demo"])
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "demo_account_not_allowed"
    assert list(response.get_json()["errors"]) == ["trading_account_id"]
    assert count(Deposit) == 0


def test_deposit_review_item_shows_the_account(client, deposit_desk):
    assert deposit(client, deposit_desk, deposit_desk["live"]).status_code == 200
    shown = audit(client, deposit_desk["book"], deposit_item(client, deposit_desk))
    assert_shows_account(shown["trading_account"], deposit_desk["live"], False, deposit_desk["book"]["live_server"])
    assert shown["is_demo"] is False


def test_a_demo_deposit_already_in_the_queue_cannot_be_credited(client, deposit_desk, monkeypatch):
    from crm_app.deposits import services as deposits

    with monkeypatch.context() as before_the_rule:
        before_the_rule.setattr(deposits, "require_live_account", lambda account, field: None)
        before_the_rule.setattr(deposits, "is_live_account", lambda account: True)
        assert deposit(client, deposit_desk, deposit_desk["demo"]).status_code == 200
    item_id = deposit_item(client, deposit_desk)
    assert audit(client, deposit_desk["book"], item_id)["is_demo"] is True
    approved = client.post(
        f"/api/v1/admin/audits/{item_id}/approve", headers=deposit_desk["book"]["admin_headers"], json={}
    )
    assert approved.status_code == 422, approved.get_json()
    assert approved.get_json()["code"] == "demo_account_not_allowed"
    assert server_balance(deposit_desk["demo"]) == Decimal("1000.00")
    assert count(BalanceOperation) == 0


# Account applications (item 2) ------------------------------------------------------


def test_account_application_review_item_shows_server_login_demo_flag_and_currency(client, factory, book):
    from tests.support.trading import apply_live, pending_application_id

    _, headers = verified_client(client, factory)
    assert apply_live(client, headers, book).status_code == 201
    item_id = pending_application_id(client, book)
    shown = audit(client, book, item_id)
    assert shown["server_id"] == book["live_server"]["id"] and shown["server_name"] == book["live_server"]["name"]
    assert shown["is_demo"] is False and shown["currency"] == "USD"
    approved = client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=book["admin_headers"], json={})
    shown = approved.get_json()["object"]
    assert shown["login"] and shown["trading_account"]["login"] == shown["login"]
    assert (
        shown["trading_account"]["is_demo"] is False
        and shown["trading_account"]["server_id"] == book["live_server"]["id"]
    )


def test_a_demo_draft_made_before_the_rule_cannot_be_submitted(client, deposit_desk, monkeypatch):
    from crm_app.deposits import services as deposits

    body = {
        "deposit_amount": "100.00",
        "remittance_id": deposit_desk["channel"],
        "trading_account_id": deposit_desk["demo"],
    }
    with monkeypatch.context() as before_the_rule:
        before_the_rule.setattr(deposits, "require_live_account", lambda account, field: None)
        drafted = client.post("/api/v1/client/deposits", headers=deposit_desk["headers"], json=body)
    assert drafted.status_code == 201, drafted.get_json()
    submitted = client.post(
        "/api/v1/client/deposits/submit",
        headers=deposit_desk["headers"],
        json={"order_number": drafted.get_json()["order_number"], "receipt_url": deposit_desk["receipt_url"]},
    )
    assert submitted.status_code == 422, submitted.get_json()
    assert submitted.get_json()["code"] == "demo_account_not_allowed"
    assert count(ReviewItem, ReviewItem.type == "deposit") == 0
    assert db.session.scalar(select(Deposit.status)) == "draft"
