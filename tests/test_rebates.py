"""Rebates: rules by version, one row per closing deal per IB, settlement paid once.

The tree of every test: Ivy (IB, level 2) > Sam (IB, level 1) > Carol (client);
Otto is an IB outside it with his own client Dave.
"""

import itertools
import threading
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.money.models import BalanceOperation
from crm_app.rebates import services as rebates
from crm_app.rebates.models import Rebate, RebateEngineState, RebateRule, RebateSettlement
from crm_app.sync import services as sync
from crm_app.sync.models import ClosedPosition
from crm_app.trading.models import TradingAccount
from crm_app.trading.services import gateway_for
from tests.support.trading import open_demo

logins = itertools.count(7_100_000)
tickets = itertools.count(900_000_000)
LONG_AGO = "2000-01-01 00:00:00"


@pytest.fixture
def tree(client, factory, book):
    ivy = factory.ib(first_name="Ivy")
    sam = factory.ib(parent=ivy, first_name="Sam")
    carol = factory.user(parent=sam, first_name="Carol")
    otto = factory.ib(first_name="Otto")
    dave = factory.user(parent=otto, first_name="Dave")
    users = {"ivy": ivy, "sam": sam, "carol": carol, "otto": otto, "dave": dave}
    return {
        "users": users,
        "headers": {name: factory.headers(client, user) for name, user in users.items()},
        "admin": book["admin_headers"],
        "book": book,
    }


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
    db.session.commit()
    return account


def closed(account, symbol="EURUSD", volume="1.00", held_seconds=3600, close_time=None, commission="0"):
    """A closing deal as the sync writes it."""
    close_time = close_time or utcnow() - timedelta(minutes=5)
    position = ClosedPosition(
        server_id=account.server_id,
        close_deal_ticket=next(tickets),
        close_order=next(tickets),
        position_id=next(tickets),
        login=account.login,
        trading_account_id=account.id,
        symbol=symbol,
        side="buy",
        volume=Decimal(volume),
        open_price=Decimal("1.10000"),
        open_time=close_time - timedelta(seconds=held_seconds),
        close_price=Decimal("1.10100"),
        close_time=close_time,
        profit=Decimal("100.00"),
        commission=Decimal(commission),
        swap=Decimal("0"),
    )
    db.session.add(position)
    db.session.commit()
    return position


def rule(client, tree, **values):
    body = {
        "symbol_pattern": "*",
        "mode": "per_lot",
        "level_amounts": ["8.00", "2.00"],
        "valid_from": LONG_AGO,
        **values,
    }
    response = client.post("/api/v1/admin/rebate-rules", headers=tree["admin"], json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def rows_of(position):
    """{receiver's first name: (level, amount, reason)} of one closing deal."""
    db.session.expire_all()
    found = db.session.execute(
        select(Rebate, Rebate.ib_id).where(Rebate.close_deal_ticket == position.close_deal_ticket)
    ).all()
    from crm_app.auth.models import User

    return {
        db.session.get(User, ib_id).first_name: (rebate.level, rebate.amount, rebate.reason) for rebate, ib_id in found
    }


def rebate_count():
    return db.session.scalar(select(db.func.count()).select_from(Rebate))


def forget_watermark():
    db.session.execute(update(RebateEngineState).values(last_closed_position_id=0))
    db.session.commit()


def run_now(client, tree, run_jobs, settle=True):
    """An admin's on-demand run: queued at once (202), done by the worker, followed by its id."""
    started = client.post("/api/v1/admin/rebates/run", headers=tree["admin"], json={"settle": settle})
    assert started.status_code == 202, started.get_json()
    queued = started.get_json()
    assert (queued["status"], queued["settle"], queued["job_id"]) == ("queued", settle, f"rebate-run-{queued['id']}")
    run_jobs()
    followed = client.get(f"/api/v1/admin/rebates/runs/{queued['id']}", headers=tree["admin"])
    assert followed.status_code == 200, followed.get_json()
    answer = followed.get_json()
    assert answer["status"] == "finished" and answer["finished_at"], answer
    return {key: answer[key] for key in ("deals", "rebates", "settlements", "paid")}


def server_balance(account_id):
    account = db.session.get(TradingAccount, account_id)
    return gateway_for(account.server).trade_state(account.login).balance


# The worked example ----------------------------------------------------------------------


def test_worked_example_three_levels(client, tree):
    """Rules:
    - `*`      per lot,  level 1 8.00, level 2 2.00, full amounts;
    - `XAU*`   per lot,  level 1 8.00, level 2 10.00, upline difference only;
    - `GBP*`   commission percent, level 1 20%, level 2 30%, full amounts.
    Carol (Sam's client, Sam under Ivy) closes:
    - EURUSD 1.50 lots: Sam 8.00 x 1.5 = 12.00; Ivy 2.00 x 1.5 = 3.00
    - XAUUSD 0.50 lots: Sam 8.00 x 0.5 = 4.00; Ivy (10.00 - 8.00) x 0.5 = 1.00
    - GBPUSD 1.00 lot with commission -7.00: Sam 20% of 7.00 = 1.40; Ivy 30% of 7.00 = 2.10
    """
    rule(client, tree, level_amounts=["8.00", "2.00"])
    rule(client, tree, symbol_pattern="XAU*", level_amounts=["8.00", "10.00"], upline_difference_only=True)
    rule(client, tree, symbol_pattern="GBP*", mode="commission_percent", level_amounts=["20", "30"])
    carol = account_for(tree["users"]["carol"], tree["book"])
    eurusd = closed(carol, "EURUSD", "1.50")
    gold = closed(carol, "XAUUSD", "0.50")
    cable = closed(carol, "GBPUSD", "1.00", commission="-7.00")

    counts = rebates.calculate_rebates()
    assert counts == {"deals": 3, "rebates": 6}
    assert rows_of(eurusd) == {"Sam": (1, Decimal("12.00"), None), "Ivy": (2, Decimal("3.00"), None)}
    assert rows_of(gold) == {"Sam": (1, Decimal("4.00"), None), "Ivy": (2, Decimal("1.00"), None)}
    assert rows_of(cable) == {"Sam": (1, Decimal("1.40"), None), "Ivy": (2, Decimal("2.10"), None)}

    # Sam sees his three rebates; Ivy's level-2 rows name Sam as the sub-IB.
    sam_rows = client.get("/api/v1/ib/rebates", headers=tree["headers"]["sam"]).get_json()
    assert sam_rows["total"] == 3
    assert {row["amount"] for row in sam_rows["list"]} == {"12.00", "4.00", "1.40"}
    assert {row["client_user_name"] for row in sam_rows["list"]} == {"Carol"}
    details = client.get("/api/v1/ib/commissions/details", headers=tree["headers"]["ivy"]).get_json()
    assert details["total"] == 3
    row = next(r for r in details["list"] if r["symbol"] == "EURUSD")
    assert (row["amount"], row["sub_ib_user_name"], row["ib_user_name"], row["trigger_event"]) == (
        "3.00",
        "Sam",
        "Ivy",
        "position_close",
    )
    assert row["mt_order_number"] == str(eurusd.close_order) and row["volume"] == 1.5


def test_zero_amounts_carry_their_reason(client, tree):
    rule(client, tree, symbol_pattern="EUR*", min_holding_seconds=120)
    carol = account_for(tree["users"]["carol"], tree["book"])
    quick = closed(carol, "EURUSD", "1.00", held_seconds=60)
    uncovered = closed(carol, "USDJPY", "1.00")
    sam_own = closed(account_for(tree["users"]["sam"], tree["book"]), "EURUSD", "2.00")

    rebates.calculate_rebates()
    zero = Decimal("0.00")
    assert rows_of(quick) == {"Sam": (1, zero, "held_too_short"), "Ivy": (2, zero, "held_too_short")}
    assert rows_of(uncovered) == {"Sam": (1, zero, "no_rule"), "Ivy": (2, zero, "no_rule")}
    # Sam's own trade earns Sam nothing; Ivy is Sam's level 1: 8.00 x 2 = 16.00.
    assert rows_of(sam_own) == {"Sam": (0, zero, "own_trade"), "Ivy": (1, Decimal("16.00"), None)}


# Exactly once ----------------------------------------------------------------------------


def test_recalculation_and_concurrent_runs_write_nothing_twice(app, client, tree):
    rule(client, tree)
    carol = account_for(tree["users"]["carol"], tree["book"])
    for _ in range(30):
        closed(carol, "EURUSD", "1.00")
    assert rebates.calculate_rebates()["rebates"] == 60
    assert rebates.calculate_rebates() == {"deals": 0, "rebates": 0}
    forget_watermark()
    assert rebates.calculate_rebates() == {"deals": 30, "rebates": 0}

    for _ in range(30):
        closed(carol, "EURUSD", "1.00")
    forget_watermark()
    answers, errors = [], []

    def run():
        try:
            with app.app_context():
                answers.append(rebates.calculate_rebates(batch_size=7))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(answer["rebates"] for answer in answers) == 60
    assert rebate_count() == 120
    assert db.session.scalar(select(db.func.sum(Rebate.amount))) == Decimal("600.00")  # 60 x (8 + 2)


def test_a_rule_change_is_not_retroactive(client, tree):
    first = rule(client, tree)
    carol = account_for(tree["users"]["carol"], tree["book"])
    before = closed(carol, "EURUSD", "1.00", close_time=utcnow() - timedelta(minutes=10))
    rebates.calculate_rebates()

    changed = client.put(
        f"/api/v1/admin/rebate-rules/{first['id']}", headers=tree["admin"], json={"level_amounts": ["5.00", "1.00"]}
    )
    assert changed.status_code == 200, changed.get_json()
    second = changed.get_json()
    assert second["id"] != first["id"] and second["rule_key"] == first["id"]
    assert second["level_amounts"] == ["5.0000", "1.0000"] and second["valid_to"] is None
    old = db.session.get(RebateRule, first["id"])
    db.session.refresh(old)
    assert old.valid_to is not None
    # The closed version cannot be changed again.
    again = client.put(f"/api/v1/admin/rebate-rules/{first['id']}", headers=tree["admin"], json={"enabled": False})
    assert again.status_code == 409

    late_sync = closed(carol, "EURUSD", "1.00", close_time=utcnow() - timedelta(minutes=9))  # closed before
    after = closed(carol, "EURUSD", "1.00", close_time=utcnow() + timedelta(seconds=1))
    forget_watermark()
    rebates.calculate_rebates()
    assert rows_of(before) == {"Sam": (1, Decimal("8.00"), None), "Ivy": (2, Decimal("2.00"), None)}
    assert rows_of(late_sync) == {"Sam": (1, Decimal("8.00"), None), "Ivy": (2, Decimal("2.00"), None)}
    assert rows_of(after) == {"Sam": (1, Decimal("5.00"), None), "Ivy": (2, Decimal("1.00"), None)}
    used = dict(db.session.execute(select(Rebate.close_deal_ticket, Rebate.rule_id).where(Rebate.level == 1)).all())
    assert used[before.close_deal_ticket] == first["id"] and used[after.close_deal_ticket] == second["id"]

    listed = client.get("/api/v1/admin/rebate-rules", headers=tree["admin"]).get_json()
    assert [r["id"] for r in listed["list"]] == [second["id"]]
    history = client.get("/api/v1/admin/rebate-rules?history=true", headers=tree["admin"]).get_json()
    assert history["total"] == 2


# Settlement ------------------------------------------------------------------------------


@pytest.fixture
def traded(client, tree, sim):
    """Carol closes EURUSD 1.00 lot on the simulator; the sync brings it in. Sam and Ivy each
    have an account chosen for payouts (opened on the simulator's demo server, then marked
    live: rebates are paid to live accounts only)."""
    rule(client, tree)
    book = tree["book"]
    carol_account = db.session.get(TradingAccount, open_demo(client, tree["headers"]["carol"], book).get_json()["id"])
    sim.control(
        "POST",
        "/sim/trades",
        {
            "server": "mt5-demo",
            "login": carol_account.login,
            "symbol": "EURUSD",
            "side": "BUY",
            "volume": "1.00",
            "open_price": "1.10000",
            "close_price": "1.10100",
        },
    )
    sim.control("POST", "/sim/clock", {"advance_minutes": 1})
    assert sync.sync_server(book["demo_server"]["id"]).status == "succeeded"
    assert db.session.scalar(select(db.func.count()).select_from(ClosedPosition)) == 1
    payout = {}
    for name in ("sam", "ivy"):
        account_id = open_demo(client, tree["headers"][name], book).get_json()["id"]
        db.session.execute(update(TradingAccount).where(TradingAccount.id == account_id).values(is_demo=False))
        db.session.commit()
        rebates.set_payout_account(tree["users"][name], account_id)
        payout[name] = account_id
    return payout


def test_settlement_pays_each_ib_once(client, tree, traded, run_jobs):
    assert run_now(client, tree, run_jobs) == {"deals": 1, "rebates": 2, "settlements": 2, "paid": 2}
    assert server_balance(traded["sam"]) == Decimal("8.00")
    assert server_balance(traded["ivy"]) == Decimal("2.00")
    assert run_now(client, tree, run_jobs) == {"deals": 0, "rebates": 0, "settlements": 0, "paid": 0}
    assert server_balance(traded["sam"]) == Decimal("8.00")

    summary = client.get("/api/v1/ib/commissions", headers=tree["headers"]["sam"]).get_json()
    assert summary["total"] == 1
    row = summary["list"][0]
    assert (row["total_orders"], row["total_amount"], row["status"]) == (1, "8.00", "paid")
    assert row["grant_at"] and row["calculate_at"]
    by_grant = client.get(
        "/api/v1/ib/commissions?time_search_type=grant_at&start_time=2099-01-01 00:00:00",
        headers=tree["headers"]["sam"],
    ).get_json()
    assert by_grant["total"] == 0
    by_client = "/api/v1/ib/commissions?client_user_name="
    assert client.get(by_client + "CARO", headers=tree["headers"]["sam"]).get_json()["total"] == 1
    assert client.get(by_client + "dave", headers=tree["headers"]["sam"]).get_json()["total"] == 0
    details = client.get(
        f"/api/v1/ib/commissions/details?rebate_aggregation_id={row['id']}&client_user_name=caro",
        headers=tree["headers"]["sam"],
    ).get_json()
    assert details["total"] == 1 and details["list"][0]["grant_at"]
    records = client.get("/api/v1/ib/rebates", headers=tree["headers"]["sam"]).get_json()["list"]
    assert records[0]["payment_time"] and records[0]["trade_profit"] == "100.00"


def test_payout_with_the_server_failing_then_recovering_pays_once(client, tree, traded, sim, run_jobs):
    from crm_app.money.services import reconcile_open_operations

    sim.faults(error_rate=1, paths=["trade/balance"])
    try:
        answer = run_now(client, tree, run_jobs)
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert answer["settlements"] == 2 and answer["paid"] == 0
    assert server_balance(traded["sam"]) == Decimal("0.00")
    # The rebates belong to their settlements already: another settlement takes nothing.
    assert rebates.settle_rebates()["settlements"] == 0

    reconcile_open_operations(grace_seconds=0)
    reconcile_open_operations(grace_seconds=0)
    rebates.settle_rebates()
    db.session.expire_all()
    assert server_balance(traded["sam"]) == Decimal("8.00")
    assert server_balance(traded["ivy"]) == Decimal("2.00")
    assert sorted(db.session.scalars(select(RebateSettlement.status))) == ["paid", "paid"]
    assert db.session.scalars(select(BalanceOperation.state)).all() == ["done", "done"]
    assert all(s.grant_at for s in db.session.scalars(select(RebateSettlement)))


def test_concurrent_settlements_pay_each_rebate_once(app, tree, traded):
    """Four runs with `settle` at once: one settlement per IB, each paid once on the server."""
    answers, errors = [], []

    def settle():
        try:
            with app.app_context():
                answers.append(rebates.run(settle=True))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=settle) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(answer["calculated"]["rebates"] for answer in answers) == 2
    assert sum(answer["settled"]["settlements"] for answer in answers) == 2
    db.session.expire_all()
    assert server_balance(traded["sam"]) == Decimal("8.00")
    assert server_balance(traded["ivy"]) == Decimal("2.00")
    assert sorted(db.session.scalars(select(RebateSettlement.status))) == ["paid", "paid"]
    assert db.session.scalar(select(db.func.count()).select_from(BalanceOperation)) == 2


def test_export_of_the_commission_details(client, tree, traded, run_jobs):
    run_now(client, tree, run_jobs)
    for path in ("/api/v1/ib/commissions/details/export", "/api/v1/ib/commissions/export"):
        started = client.post(path, headers=tree["headers"]["sam"], json={"time_search_type": "grant_at"})
        assert started.status_code == 200, started.get_json()
        assert started.get_json()["download_url"]
    run_jobs()
    link = client.post("/api/v1/ib/commissions/details/export", headers=tree["headers"]["sam"], json={}).get_json()[
        "download_url"
    ]
    run_jobs()
    downloaded = client.get(link)
    assert downloaded.status_code == 200
    text = downloaded.get_data().decode("utf-8-sig")
    assert "Carol" in text and "8.00" in text and "position_close" in text


# Scope and roles -------------------------------------------------------------------------


def test_an_ib_sees_only_its_own_rebates(client, tree):
    rule(client, tree)
    closed(account_for(tree["users"]["carol"], tree["book"]), "EURUSD", "1.00")
    closed(account_for(tree["users"]["dave"], tree["book"]), "EURUSD", "3.00")
    rebates.calculate_rebates()
    assert rebates.settle_rebates()["settlements"] == 0  # nobody has a payout account yet

    def amounts(name, path="/api/v1/ib/rebates"):
        response = client.get(path, headers=tree["headers"][name])
        assert response.status_code == 200, response.get_json()
        return sorted(row["amount"] for row in response.get_json()["list"])

    assert amounts("sam") == ["8.00"]
    assert amounts("ivy") == ["2.00"]
    assert amounts("otto") == ["24.00"]
    assert amounts("otto", "/api/v1/ib/commissions/details") == ["24.00"]
    assert amounts("ivy", "/api/v1/ib/commissions") == []
    for path in ("/api/v1/ib/rebates", "/api/v1/ib/commissions", "/api/v1/ib/commissions/details"):
        assert client.get(path, headers=tree["headers"]["carol"]).status_code == 403
        assert client.get(path).status_code == 401


def test_admin_routes_refuse_non_admins(client, tree):
    body = {"mode": "per_lot", "level_amounts": ["1.00"]}
    for name in ("sam", "carol"):
        headers = tree["headers"][name]
        assert client.get("/api/v1/admin/rebate-rules", headers=headers).status_code == 403
        assert client.post("/api/v1/admin/rebate-rules", headers=headers, json=body).status_code == 403
        assert client.put("/api/v1/admin/rebate-rules/1", headers=headers, json=body).status_code == 403
        assert client.delete("/api/v1/admin/rebate-rules/1", headers=headers).status_code == 403
        assert client.post("/api/v1/admin/rebates/run", headers=headers, json={}).status_code == 403
    bad = client.post(
        "/api/v1/admin/rebate-rules", headers=tree["admin"], json={"mode": "per_lot", "level_amounts": ["-1"]}
    )
    assert bad.status_code == 422
    created = rule(client, tree)
    assert client.delete(f"/api/v1/admin/rebate-rules/{created['id']}", headers=tree["admin"]).status_code == 204
    assert client.get("/api/v1/admin/rebate-rules", headers=tree["admin"]).get_json()["total"] == 0


def test_seed_rules_cover_the_demo_account_types(ctx, book):
    from crm_app.rebates.demo import seed_rebates_demo

    seed_rebates_demo()
    seed_rebates_demo()
    rules = db.session.scalars(select(RebateRule)).all()
    assert {r.account_type_id for r in rules} == {book["demo_type"]["id"], book["live_type"]["id"]}
    assert len(rules) == 4
    assert all(len(r.level_amounts) >= 2 and r.min_holding_seconds <= 120 for r in rules)
    assert all(r.valid_from <= datetime(2020, 1, 1) for r in rules)
