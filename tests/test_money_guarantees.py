"""The money rules under faults: every operation done once or visibly failed, and the
CRM's balance operations equal the trading server's balance deals, one for one."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from crm_app.extensions import db
from crm_app.money import services as money
from crm_app.money.models import BalanceOperation
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import gateway_for
from tests.support.trading import open_demo


@pytest.fixture
def account(client, factory, book):
    headers = factory.headers(client, factory.user())
    return db.session.get(TradingAccount, open_demo(client, headers, book).get_json()["id"])


def server_deals(account):
    gateway = gateway_for(account.server)
    now = gateway.server_time()
    deals = gateway.iter_deals([account.login], now - timedelta(days=2), now + timedelta(days=1))
    return {deal.comment: deal for deal in deals if deal.action == "balance"}


def test_every_operation_ends_once_under_faults_and_matches_the_server(account, sim, ctx):
    rng = random.Random(7)
    operations = []
    for index in range(30):
        amount = Decimal(rng.choice(["100.00", "250.00", "-40.00", "75.50"]))
        operations.append(money.open_operation(account, "DEP" if amount > 0 else "WDR", amount, "test", index))
    db.session.commit()

    sim.faults(error_rate=0.3, lost_answer_rate=0.3, paths=["trade/balance"])
    try:
        for operation in operations:
            money.run_operation(operation.id)
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    for _ in range(5):
        money.reconcile_open_operations(grace_seconds=0)

    db.session.expire_all()
    rows = db.session.scalars(select(BalanceOperation).order_by(BalanceOperation.id)).all()
    assert all(row.state in ("done", "failed") for row in rows), [(r.id, r.state) for r in rows]
    deals = server_deals(account)
    done = {row.comment: row for row in rows if row.state == "done"}
    assert set(deals) == set(done), "the server's balance deals and the CRM's done operations differ"
    for comment, row in done.items():
        assert deals[comment].ticket == row.ticket
        assert deals[comment].profit == row.amount
    balance = gateway_for(account.server).trade_state(account.login).balance
    assert balance == sum((row.amount for row in done.values()), Decimal("0"))


def test_process_dying_after_the_server_applied_is_settled_once(account, monkeypatch, ctx):
    """The web or worker process dies between the server's answer and our commit."""
    operation = money.open_operation(account, "DEP", Decimal("500.00"), "test", 1)
    db.session.commit()

    def die(*args, **kwargs):
        raise SystemExit("killed")

    monkeypatch.setattr(money, "settle", die)
    with pytest.raises(SystemExit):
        money.run_operation(operation.id)
    monkeypatch.undo()
    db.session.rollback()

    db.session.expire_all()
    assert db.session.get(BalanceOperation, operation.id).state == "unknown"
    money.reconcile_open_operations(grace_seconds=0)
    money.reconcile_open_operations(grace_seconds=0)
    db.session.expire_all()
    settled = db.session.get(BalanceOperation, operation.id)
    assert settled.state == "done" and settled.ticket
    assert list(server_deals(account)) == [settled.comment]
    assert gateway_for(account.server).trade_state(account.login).balance == Decimal("500.00")


def test_withdrawal_beyond_the_balance_is_failed_and_visible(account, ctx):
    operation = money.open_operation(account, "WDR", Decimal("-10.00"), "test", 1)
    db.session.commit()
    result = money.run_operation(operation.id)
    assert result.state == "failed" and "NoMoney" in result.error
    assert server_deals(account) == {}


def test_every_settled_operation_is_in_the_audit_log(account, ctx):
    from crm_app.admin.models import AuditLog

    operation = money.open_operation(account, "DEP", Decimal("5.00"), "test", 1)
    db.session.commit()
    money.run_operation(operation.id)
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "balance_operation.done"))
    assert entry.target_id == str(operation.id) and entry.details["amount"] == "5.00"
