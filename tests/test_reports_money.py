"""Deposit and transfer reports: filters, and scope (a client its own rows, an IB its whole
tree and nobody else's, an admin everything)."""

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from crm_app.deposits.models import Deposit
from crm_app.extensions import db
from crm_app.funding.models import DepositChannel
from crm_app.review.models import ReviewItem
from crm_app.trading.models import TradingAccount
from crm_app.transfers.models import Transfer

logins = itertools.count(8_000_000)
# What the object itself says while its review item is in a given state.
OBJECT_STATUS = {"pending": "auditing", "auditing": "auditing"}


@pytest.fixture
def tree(factory, book, client):
    """IB1 > IB2 > carol (client); IB1 > alice (client); dave (client) outside the tree."""
    ib1 = factory.ib(first_name="Ivy", last_name="One")
    ib2 = factory.ib(parent=ib1)
    carol = factory.user(parent=ib2, first_name="Carol")
    alice = factory.user(parent=ib1, first_name="Alice")
    dave = factory.user(first_name="Dave")
    admin = book["admin"]
    people = {"ib1": ib1, "ib2": ib2, "carol": carol, "alice": alice, "dave": dave, "admin": admin}
    return {name: (user, factory.headers(client, user)) for name, user in people.items()} | {"book": book}


def account_for(user, book):
    account = TradingAccount(
        user_id=user.id,
        server_id=book["demo_server"]["id"],
        account_type_id=book["demo_type"]["id"],
        login=next(logins),
        leverage=100,
        currency="USD",
        is_demo=True,
    )
    db.session.add(account)
    db.session.flush()
    return account


def add_transfer(user, book, amount, status, when):
    source, target = account_for(user, book), account_for(user, book)
    transfer = Transfer(
        order_number=f"TR{next(logins)}",
        user_id=user.id,
        source_account_id=source.id,
        target_account_id=target.id,
        amount=Decimal(amount),
        currency="USD",
        status=OBJECT_STATUS.get(status, status),
        created_at=when,
    )
    db.session.add(transfer)
    db.session.flush()
    item = ReviewItem(
        type="transfer", status=status, user_id=user.id, object_id=transfer.id, object_ref=transfer.order_number
    )
    db.session.add(item)
    db.session.flush()
    transfer.review_item_id = item.id
    db.session.commit()
    return transfer


def add_deposit(user, book, channel, amount, status, when):
    account = account_for(user, book)
    deposit = Deposit(
        order_number=f"DP{next(logins)}",
        user_id=user.id,
        trading_account_id=account.id,
        channel_id=channel.id,
        amount=Decimal(amount),
        fee=Decimal("1.00"),
        currency="USD",
        status=OBJECT_STATUS.get(status, status),
        created_at=when,
        expires_at=when + timedelta(days=1),
        submitted_at=when,
    )
    db.session.add(deposit)
    db.session.flush()
    item = ReviewItem(
        type="deposit", status=status, user_id=user.id, object_id=deposit.id, object_ref=deposit.order_number
    )
    db.session.add(item)
    db.session.flush()
    deposit.review_item_id = item.id
    db.session.commit()
    return deposit


def names(client, headers, path):
    answer = client.get(path, headers=headers).get_json()
    assert answer["total"] == len(answer["list"]), answer
    return sorted(row["user_name"] for row in answer["list"])


def test_transfer_report_is_scoped_by_the_tree(client, tree):
    base = datetime(2026, 11, 20, 8, 0, 0)
    for name in ("carol", "alice", "dave", "ib2"):
        add_transfer(tree[name][0], tree["book"], "10.00", "approved", base)
    path = "/api/v1/reports/transfers?status=all"
    everyone = ["Alice", "Carol", "Dave", tree["ib2"][0].email]
    assert names(client, tree["admin"][1], path) == sorted(everyone)
    assert names(client, tree["ib1"][1], path) == sorted(["Alice", "Carol", tree["ib2"][0].email])
    assert names(client, tree["ib2"][1], path) == sorted(["Carol", tree["ib2"][0].email])
    assert names(client, tree["carol"][1], path) == ["Carol"]
    assert names(client, tree["dave"][1], path) == ["Dave"]


def test_transfer_report_filters(client, tree):
    carol = tree["carol"][0]
    early = add_transfer(carol, tree["book"], "10.00", "pending", datetime(2026, 11, 1, 1, 0, 0))
    add_transfer(carol, tree["book"], "20.00", "approved", datetime(2026, 11, 10, 1, 0, 0))
    add_transfer(carol, tree["book"], "30.00", "disapproved", datetime(2026, 11, 20, 1, 0, 0))
    headers = tree["carol"][1]

    def amounts(query):
        answer = client.get(f"/api/v1/reports/transfers?{query}", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        return [row["amount"] for row in answer.get_json()["list"]]

    assert amounts("status=all") == ["30.00", "20.00", "10.00"]
    assert amounts("status=pending") == ["10.00"]
    assert amounts("status=disapproved") == ["30.00"]
    assert amounts(f"status=all&order_number={early.order_number}") == ["10.00"]
    # The broker's timezone is UTC here (no seed): the range is inclusive on both ends.
    assert amounts("status=all&start_time=2026-11-05 00:00:00&end_time=2026-11-15 00:00:00") == ["20.00"]
    assert amounts("status=all&size=1&page=2") == ["20.00"]
    assert client.get("/api/v1/reports/transfers?status=maybe", headers=headers).status_code == 422
    assert client.get("/api/v1/reports/transfers", headers=headers).status_code == 422
    assert client.get("/api/v1/reports/transfers?status=all&start_time=yesterday", headers=headers).status_code == 422


def test_report_times_follow_the_brokers_timezone(client, tree, ctx):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"timezone": "Asia/Shanghai"})
    add_transfer(tree["carol"][0], tree["book"], "10.00", "approved", datetime(2026, 11, 20, 20, 30, 0))
    row = client.get("/api/v1/reports/transfers?status=all", headers=tree["carol"][1]).get_json()["list"][0]
    assert row["submit_time"] == "2026-11-21 04:30:00"
    inside = "/api/v1/reports/transfers?status=all&start_time=2026-11-21 04:00:00&end_time=2026-11-21 05:00:00"
    assert client.get(inside, headers=tree["carol"][1]).get_json()["total"] == 1


def test_deposit_report_rows_and_scope(client, tree):
    channel = DepositChannel(method="bank_transfer", name="Bank", min_amount=Decimal("1"), max_amount=Decimal("9999"))
    db.session.add(channel)
    db.session.commit()
    when = datetime(2026, 11, 20, 8, 0, 0)
    add_deposit(tree["carol"][0], tree["book"], channel, "100.00", "pending", when)
    add_deposit(tree["carol"][0], tree["book"], channel, "200.00", "approved", when + timedelta(hours=1))
    add_deposit(tree["dave"][0], tree["book"], channel, "300.00", "approved", when)

    answer = client.get("/api/v1/reports/deposits?status=all", headers=tree["ib1"][1]).get_json()
    assert answer["total"] == 2
    first = answer["list"][0]
    assert first["amount"] == "200.00" and first["fee"] == "1.00" and first["method"] == "bank_transfer"
    assert first["user_name"] == "Carol" and first["server_name"] == "Demo MT5" and first["status"] == "approved"
    auditing = client.get("/api/v1/reports/deposits?status=auditing", headers=tree["ib1"][1]).get_json()
    assert [row["amount"] for row in auditing["list"]] == ["100.00"]
    assert client.get("/api/v1/reports/deposits?status=all", headers=tree["admin"][1]).get_json()["total"] == 3
    assert client.get("/api/v1/reports/deposits?status=all", headers=tree["dave"][1]).get_json()["total"] == 1
    assert client.get("/api/v1/reports/deposits?status=all").status_code == 401


def test_withdrawal_report_filters_by_method_and_status_within_scope(client, tree):
    from crm_app.funding.models import WithdrawalChannel
    from crm_app.withdrawals.models import Withdrawal

    channel = WithdrawalChannel(method="cryptocurrency", name="USDT", min_amount=Decimal("1"), max_amount=Decimal("9"))
    db.session.add(channel)
    db.session.commit()

    def add(user, method, status):
        account = account_for(user, tree["book"])
        withdrawal = Withdrawal(
            order_number=f"WD{next(logins)}",
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
        )
        db.session.add(withdrawal)
        db.session.flush()
        item = ReviewItem(type="withdrawal", status=status, user_id=user.id, object_id=withdrawal.id)
        db.session.add(item)
        db.session.flush()
        withdrawal.review_item_id = item.id
        db.session.commit()

    add(tree["carol"][0], "cryptocurrency", "auditing")
    add(tree["carol"][0], "bank_transfer", "approved")
    add(tree["dave"][0], "cryptocurrency", "approved")
    path = "/api/v1/reports/withdrawals?status={}&method={}"
    ib = tree["ib1"][1]
    assert client.get(path.format("all", "all"), headers=ib).get_json()["total"] == 2
    crypto = client.get(path.format("all", "cryptocurrency"), headers=ib).get_json()["list"]
    assert [(row["method"], row["status"], row["fee"]) for row in crypto] == [("cryptocurrency", "auditing", "0.25")]
    assert client.get(path.format("approved", "all"), headers=tree["admin"][1]).get_json()["total"] == 2
    assert client.get(path.format("all", "cash"), headers=ib).status_code == 422
