"""Closed orders, positions and pending orders reports: synced from the simulator, filtered,
and scoped (an IB sees its tree, a client its own accounts, an admin all)."""

from decimal import Decimal

import pytest
from sqlalchemy import update

from crm_app.extensions import db
from crm_app.sync import services as sync
from crm_app.trading.models import TradingAccount, TradingServer
from crm_app.trading.services import gateway_for
from tests.support.trading import open_demo


@pytest.fixture
def traders(client, factory, book, sim):
    """IB > carol; dave outside. Each has a funded demo account with trades on the simulator."""
    db.session.execute(
        update(TradingServer).where(TradingServer.id == book["demo_server"]["id"]).values(timezone="+02:00")
    )
    db.session.commit()
    ib = factory.ib()
    people = {"ib": ib, "carol": factory.user(parent=ib, first_name="Carol"), "dave": factory.user(first_name="Dave")}
    headers = {name: factory.headers(client, user) for name, user in people.items()}
    accounts = {}
    for name in ("carol", "dave"):
        account = db.session.get(TradingAccount, open_demo(client, headers[name], book).get_json()["id"])
        gateway_for(account.server).balance_operation(account.login, Decimal("10000.00"), f"DEP#rep{account.login}")
        accounts[name] = account

    def control(path, body):
        return sim.control("POST", path, {"server": "mt5-demo", **body})

    carol, dave = accounts["carol"].login, accounts["dave"].login
    control(
        "/sim/trades",
        {
            "login": carol,
            "symbol": "EURUSD",
            "side": "BUY",
            "volume": "1.00",
            "open_price": "1.10000",
            "close_price": "1.10100",
        },
    )
    control(
        "/sim/trades",
        {
            "login": carol,
            "symbol": "XAUUSD",
            "side": "SELL",
            "volume": "0.50",
            "open_price": "2000.00",
            "close_price": "1990.00",
        },
    )
    control("/sim/trades", {"login": carol, "symbol": "EURUSD", "side": "BUY", "volume": "2.00"})
    control(
        "/sim/pending-orders",
        {"login": carol, "symbol": "EURUSD", "type": "BUY_LIMIT", "volume": "1.00", "price": "1.05000"},
    )
    control(
        "/sim/trades",
        {
            "login": dave,
            "symbol": "EURUSD",
            "side": "SELL",
            "volume": "3.00",
            "open_price": "1.10000",
            "close_price": "1.09000",
        },
    )
    sim.control("POST", "/sim/clock", {"advance_minutes": 1})
    assert sync.sync_server(book["demo_server"]["id"]).status == "succeeded"
    return {
        "headers": headers | {"admin": book["admin_headers"]},
        "accounts": accounts,
        "server_id": book["demo_server"]["id"],
    }


def listing(client, headers, path):
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["total"] >= len(answer["list"])
    return answer


def test_history_orders_rows_and_scope(client, traders):
    carol_rows = listing(client, traders["headers"]["carol"], "/api/v1/reports/history-orders?trading_type=all")
    assert carol_rows["total"] == 2
    by_symbol = {row["symbol"]: row for row in carol_rows["list"]}
    eurusd = by_symbol["EURUSD"]
    assert (eurusd["trading_type"], eurusd["volume"], eurusd["open_price"], eurusd["close_price"]) == (
        "BUY",
        "1.00",
        "1.10000",
        "1.10100",
    )
    assert eurusd["profit"] == "100.00" and eurusd["user_name"] == "Carol"
    assert eurusd["trading_account"]["id"] == traders["accounts"]["carol"].id
    assert by_symbol["XAUUSD"]["trading_type"] == "SELL" and by_symbol["XAUUSD"]["profit"] == "500.00"

    ib_rows = listing(client, traders["headers"]["ib"], "/api/v1/reports/history-orders?trading_type=all")
    assert {row["user_name"] for row in ib_rows["list"]} == {"Carol"}
    admin_rows = listing(client, traders["headers"]["admin"], "/api/v1/reports/history-orders?trading_type=all")
    assert admin_rows["total"] == 3
    dave_rows = listing(client, traders["headers"]["dave"], "/api/v1/reports/history-orders?trading_type=all")
    assert [row["user_name"] for row in dave_rows["list"]] == ["Dave"]


def test_history_orders_filters(client, traders):
    headers = traders["headers"]["admin"]
    base = "/api/v1/reports/history-orders?trading_type="
    assert listing(client, headers, base + "SELL")["total"] == 2
    assert listing(client, headers, base + "all&symbol=xauusd")["total"] == 1
    carol = traders["accounts"]["carol"]
    assert listing(client, headers, base + f"all&account={carol.login}")["total"] == 2
    assert listing(client, headers, base + f"all&trading_account_id={carol.id}")["total"] == 2
    assert client.get(base + "all&account=not-a-login", headers=headers).status_code == 422  # logins are digits
    one = listing(client, headers, base + f"all&size=1&account={carol.login}")["list"][0]
    by_ticket = listing(client, headers, base + f"all&order_number={one['order_number']}&account={carol.login}")
    assert [row["order_number"] for row in by_ticket["list"]] == [one["order_number"]]
    assert listing(client, headers, base + "all&time_type=close&start_time=2000-01-01 00:00:00")["total"] == 3
    assert listing(client, headers, base + "all&end_time=2000-01-01 00:00:00")["total"] == 0
    assert listing(client, headers, base + f"all&server_id={traders['server_id'] + 999}")["total"] == 0
    assert client.get(base + "LONG", headers=headers).status_code == 422
    assert client.get(base + "all&time_type=midnight", headers=headers).status_code == 422


def test_positions_and_pending_orders(client, traders):
    positions = listing(client, traders["headers"]["ib"], "/api/v1/reports/positions?trading_type=all")
    assert positions["total"] == 1
    row = positions["list"][0]
    assert (row["symbol"], row["trading_type"], row["volume"], row["leverage"]) == ("EURUSD", "BUY", "2.00", 100)
    assert listing(client, traders["headers"]["dave"], "/api/v1/reports/positions?trading_type=all")["total"] == 0
    assert listing(client, traders["headers"]["admin"], "/api/v1/reports/positions?trading_type=SELL")["total"] == 0

    pending = listing(client, traders["headers"]["carol"], "/api/v1/reports/pending-orders?trading_type=all")
    assert pending["total"] == 1
    order = pending["list"][0]
    assert (order["trading_type"], order["pending_price"], order["volume"]) == ("BUY_LIMIT", "1.05000", "1.00")
    assert (
        listing(client, traders["headers"]["carol"], "/api/v1/reports/pending-orders?trading_type=SELL_STOP")["total"]
        == 0
    )
    assert listing(client, traders["headers"]["dave"], "/api/v1/reports/pending-orders?trading_type=all")["total"] == 0
    assert (
        client.get("/api/v1/reports/pending-orders?trading_type=BUY", headers=traders["headers"]["carol"]).status_code
        == 422
    )
