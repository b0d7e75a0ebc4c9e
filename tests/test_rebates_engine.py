"""The rebate engine's two paths write the same rows.

PostgreSQL computes a batch in one INSERT ... SELECT; other databases (SQLite, the demo)
build the rows in Python. A book that touches every rule of the engine (levels, a demoted
IB in the chain, difference-only uplines, commission percentages, rule versions, priorities,
MT group patterns, disabled rules, holding times, own trades, deals without an account) is
rebated by each path in turn, and the rows must be equal to the last column.
"""

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, select, update

from crm_app.auth.models import User
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.rebates import services as rebates
from crm_app.rebates.models import Rebate, RebateEngineState, RebateRule
from crm_app.sync.models import ClosedPosition
from crm_app.trading.models import AccountType, TradingAccount, TradingServer

tickets = itertools.count(700_000_000)
logins = itertools.count(8_100_000)
COMPARED = [c.name for c in Rebate.__table__.columns if c.name not in ("id", "calculated_at", "settlement_id")]


@pytest.fixture
def book(ctx, factory):
    server = TradingServer(
        name="Engine MT5",
        platform="MT5",
        base_url="http://127.0.0.1:1",
        manager_login=1000,
        manager_password_encrypted="x",
        next_login=8_100_000,
        last_login=8_199_999,
    )
    db.session.add(server)
    db.session.flush()
    standard = AccountType(name="Standard", server_id=server.id, mt_group="real\\standard")
    ecn = AccountType(name="ECN", server_id=server.id, mt_group="real\\ecn-pro")
    db.session.add_all([standard, ecn])
    db.session.commit()
    # top > mid > low (demoted to client, still in the chain) > bottom > carol; lone > dave; eve alone
    top = factory.ib(first_name="Top")
    mid = factory.ib(parent=top, first_name="Mid")
    low = factory.ib(parent=mid, first_name="Low")
    bottom = factory.ib(parent=low, first_name="Bottom")
    carol = factory.user(parent=bottom, first_name="Carol")
    lone = factory.ib(first_name="Lone")
    dave = factory.user(parent=lone, first_name="Dave")
    eve = factory.user(first_name="Eve")
    db.session.execute(update(User).where(User.id == low.id).values(user_type="client"))
    db.session.commit()
    people = {u.first_name: u for u in (top, mid, low, bottom, carol, lone, dave, eve)}
    return {"server": server, "standard": standard, "ecn": ecn, "people": people}


def account(book, name, account_type="standard"):
    row = TradingAccount(
        user_id=book["people"][name].id,
        server_id=book["server"].id,
        account_type_id=book[account_type].id,
        login=next(logins),
        leverage=100,
    )
    db.session.add(row)
    db.session.commit()
    return row


def deal(book, account_row, symbol, volume, close_time, held=3600, commission="-7.00", open_time=True):
    db.session.add(
        ClosedPosition(
            server_id=book["server"].id,
            close_deal_ticket=next(tickets),
            close_order=next(tickets),
            position_id=next(tickets),
            login=account_row.login if account_row else 1,
            trading_account_id=account_row.id if account_row else None,
            symbol=symbol,
            side="sell",
            volume=Decimal(volume),
            open_price=Decimal("1.1"),
            open_time=(close_time - timedelta(seconds=held)) if open_time else None,
            close_price=Decimal("1.2"),
            close_time=close_time,
            profit=Decimal("12.34"),
            commission=Decimal(commission),
            swap=Decimal("0"),
        )
    )


def add_rule(**values):
    rule = RebateRule(
        **{
            "name": "r",
            "symbol_pattern": "*",
            "mode": "per_lot",
            "level_amounts": ["8", "4", "2"],
            "valid_from": utcnow() - timedelta(days=30),
            **values,
        }
    )
    db.session.add(rule)
    db.session.flush()
    rule.rule_key = rule.id
    return rule


def rows():
    db.session.expire_all()
    found = db.session.execute(select(Rebate).order_by(Rebate.close_deal_ticket, Rebate.ib_id)).scalars().all()
    return [tuple(getattr(r, c) for c in COMPARED) for r in found]


def start_over():
    db.session.execute(delete(Rebate))
    db.session.execute(update(RebateEngineState).values(last_closed_position_id=0))
    db.session.commit()


def test_both_paths_write_the_same_rows(book):
    now = utcnow()
    change = now - timedelta(days=5)
    standard = book["standard"]
    base = add_rule(account_type_id=standard.id, min_holding_seconds=60, valid_to=change)
    add_rule(account_type_id=standard.id, level_amounts=["9", "3"], min_holding_seconds=60, valid_from=change)
    add_rule(
        account_type_id=standard.id,
        symbol_pattern="XAU*",
        level_amounts=["8", "8.004", "5"],
        upline_difference_only=True,
        priority=5,
    )
    add_rule(
        account_type_id=standard.id, symbol_pattern="gbp???", mode="commission_percent", level_amounts=["20", "30.5"]
    )
    add_rule(mt_group_pattern="REAL\\ecn*", symbol_pattern="[EU]*", level_amounts=["0.001", "1"])
    add_rule(account_type_id=standard.id, symbol_pattern="EURUSD", level_amounts=["100"], enabled=False, priority=9)
    db.session.commit()
    assert base.valid_to == change

    carol, carol_ecn = account(book, "Carol"), account(book, "Carol", "ecn")
    own = {name: account(book, name) for name in ("Bottom", "Mid", "Top", "Low")}
    dave, eve = account(book, "Dave", "ecn"), account(book, "Eve")
    for n in range(3):
        for when in (now - timedelta(days=9), now - timedelta(hours=n + 1), change):
            for symbol in ("EURUSD", "XAUUSD", "GBPJPY", "gbpusd", "US30", "BTCUSD"):
                for row in (carol, carol_ecn, dave, eve, *own.values()):
                    deal(book, row, symbol, f"{n + 1}.37", when, held=30 + 20 * n, commission=f"-{n}.55")
        deal(book, carol, "EURUSD", "0.01", now - timedelta(hours=2), held=7200)
        deal(book, carol, "EURUSD", "1.00", now - timedelta(hours=2), open_time=False)
        deal(book, None, "EURUSD", "1.00", now - timedelta(hours=2))
    db.session.commit()
    deals = db.session.scalar(select(db.func.count()).select_from(ClosedPosition))

    in_python = rebates.calculate_rebates(batch_size=50, in_sql=False)
    expected = rows()
    start_over()
    in_sql = rebates.calculate_rebates(batch_size=50, in_sql=True)
    assert in_sql == in_python == {"deals": deals, "rebates": len(expected)}
    assert rows() == expected

    reasons = {row[COMPARED.index("reason")] for row in expected}
    assert reasons == {
        None,
        "no_rule",
        "held_too_short",
        "own_trade",
        "level_not_covered",
        "no_difference",
        "zero_amount",
    }
    # The demoted IB is skipped: Carol's levels are Bottom, Mid, Top.
    by_ib = {(r[COMPARED.index("client_id")], r[COMPARED.index("ib_id")]): r[COMPARED.index("level")] for r in expected}
    people = book["people"]
    assert by_ib[(people["Carol"].id, people["Bottom"].id)] == 1
    assert by_ib[(people["Carol"].id, people["Mid"].id)] == 2
    assert by_ib[(people["Carol"].id, people["Top"].id)] == 3
    assert (people["Carol"].id, people["Low"].id) not in by_ib
    assert not any(client == people["Eve"].id for client, _ in by_ib)


def test_a_rescan_rebates_deals_committed_behind_the_watermark(book):
    """A sync transaction that took lower ids may commit after higher ones were read."""
    add_rule()
    db.session.commit()
    carol = account(book, "Carol")
    for _ in range(3):
        deal(book, carol, "EURUSD", "1.00", utcnow() - timedelta(minutes=5))
    db.session.commit()
    assert rebates.calculate_rebates() == {"deals": 3, "rebates": 9}
    # Simulate the late commit: the rebates of the first deal never made it.
    first = db.session.scalar(select(db.func.min(ClosedPosition.close_deal_ticket)))
    db.session.execute(delete(Rebate).where(Rebate.close_deal_ticket == first))
    db.session.commit()
    assert rebates.calculate_rebates() == {"deals": 0, "rebates": 3}
    assert rebates.calculate_rebates() == {"deals": 0, "rebates": 0}


def test_the_engine_runs_on_sqlite_for_the_demo(tmp_path):
    """Without PostgreSQL (the demo's default SQLite file) the generic path writes the rows."""
    from flask_migrate import upgrade

    from crm_app import create_app
    from crm_app.admin.services import create_user
    from tests.conftest import CHEAP_ARGON2

    app = create_app(
        {
            "APP_ENV": "test",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'demo.db'}",
            "REDIS_URL": None,
            "TESTING": True,
            **CHEAP_ARGON2,
        }
    )
    with app.app_context():
        upgrade()
        users = {}
        for name, user_type, parent in (("ivy", "ib", None), ("sam", "ib", "ivy"), ("carol", "client", "sam")):
            values = {"email": f"{name}@example.test", "password": "Quartz-Lantern-58", "user_type": user_type}
            values["parent_ib_id"] = users[parent].id if parent else None
            users[name] = create_user(values, actor=None, client=None)
        book = {"people": {"Carol": users["carol"], "Sam": users["sam"]}}
        server = TradingServer(
            name="Demo",
            platform="MT5",
            base_url="http://x",
            manager_login=1,
            manager_password_encrypted="x",
            next_login=1,
            last_login=2,
        )
        db.session.add(server)
        db.session.flush()
        book["server"] = server
        book["standard"] = AccountType(name="Standard", server_id=server.id, mt_group="demo\\standard")
        db.session.add(book["standard"])
        add_rule(level_amounts=["8", "2"], min_holding_seconds=60)
        db.session.commit()
        carol, sam = account(book, "Carol"), account(book, "Sam")
        deal(book, carol, "EURUSD", "1.50", utcnow() - timedelta(minutes=5))
        deal(book, carol, "EURUSD", "1.00", utcnow() - timedelta(minutes=5), held=10)
        deal(book, sam, "XAUUSD", "2.00", utcnow() - timedelta(minutes=5))
        db.session.commit()

        assert rebates.calculate_rebates() == {"deals": 3, "rebates": 6}
        assert rebates.calculate_rebates() == {"deals": 0, "rebates": 0}
        found = db.session.execute(select(Rebate.ib_id, Rebate.level, Rebate.amount, Rebate.reason)).all()
        ivy, sam_id = users["ivy"].id, users["sam"].id
        assert sorted(found, key=lambda r: (r.ib_id, r.level, r.amount)) == sorted(
            [
                (sam_id, 1, Decimal("12.00"), None),
                (ivy, 2, Decimal("3.00"), None),
                (sam_id, 1, Decimal("0.00"), "held_too_short"),
                (ivy, 2, Decimal("0.00"), "held_too_short"),
                (sam_id, 0, Decimal("0.00"), "own_trade"),
                (ivy, 1, Decimal("16.00"), None),
            ],
            key=lambda r: (r[0], r[1], r[2]),
        )
        db.session.remove()
