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
from tests.support.money import fund, open_live_account, server_balance, verified_client
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
