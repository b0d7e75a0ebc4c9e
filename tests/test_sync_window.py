""" "Sync now" shows what just happened: a sync reads the trading server's clock and takes every
deal done up to that moment, the second it read included; what it reads twice (the overlap,
a window's edge, the next run) stays one row.

Through the API and the MT simulator over HTTP, with the real MT5 adapter and a real worker."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from crm_app.extensions import db
from crm_app.integrations.trading.mt5_webapi import MT5WebAPIGateway
from crm_app.integrations.trading.simulator import book as sim_book
from crm_app.sync.models import ClosedPosition, SyncedDeal
from crm_app.trading.models import TradingAccount, TradingServer
from crm_app.trading.services import gateway_for
from tests.support.trading import open_demo

SIM_SERVER = "mt5-demo"


@pytest.fixture
def server_id(book):
    server_id = book["demo_server"]["id"]
    db.session.execute(update(TradingServer).where(TradingServer.id == server_id).values(timezone="+02:00"))
    db.session.commit()
    return server_id


@pytest.fixture
def stopped_clock(monkeypatch):
    """The simulator's clock held still at a moment half way through a second, so a trade made
    "now" and the server time a sync reads next fall in the very same second (on a real
    server they do whenever an admin clicks "sync" right after a close)."""
    real = sim_book.sim_now
    held = {}

    def sim_now(conn):
        if "moment" not in held:
            held["moment"] = real(conn).replace(microsecond=500_000)
        return held["moment"]

    monkeypatch.setattr(sim_book, "sim_now", sim_now)
    return held


def trader(client, factory, book):
    headers = factory.headers(client, factory.user())
    answer = open_demo(client, headers, book)
    assert answer.status_code == 201, answer.get_json()
    account = db.session.get(TradingAccount, answer.get_json()["id"])
    gateway_for(account.server).balance_operation(account.login, Decimal("10000.00"), f"DEP#win{account.login}")
    return account, headers


def close_a_trade(sim, login, **values):
    body = {"server": SIM_SERVER, "login": login, "symbol": "EURUSD", "side": "BUY", "volume": "0.10"}
    answer = sim.control("POST", "/sim/trades", {**body, "close_price": "1.08250", **values})
    assert len(answer["deals"]) == 2, answer
    return answer


def sync_now(client, admin, server_id, run_jobs):
    """What an admin's "sync now" does: POST /admin/sync, a worker runs the job."""
    queued = client.post("/api/v1/admin/sync", headers=admin, json={"server_id": server_id})
    assert queued.status_code == 202, queued.get_json()
    run_jobs()
    states = client.get("/api/v1/admin/sync", headers=admin).get_json()["list"]
    state = next(row for row in states if row["server_id"] == server_id)
    assert state["last_status"] == "succeeded", state
    return state


def closed_orders(client, headers, login):
    response = client.get(
        "/api/v1/reports/history-orders", headers=headers, query_string={"trading_type": "all", "account": str(login)}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_trade_closed_in_the_second_the_sync_reads_the_clock_is_in_that_sync(
    client, factory, book, server_id, sim, stopped_clock, run_jobs
):
    account, headers = trader(client, factory, book)
    trade = close_a_trade(sim, account.login)
    closed_at = stopped_clock["moment"]

    # No waiting, no clock moved on: the admin syncs at once.
    state = sync_now(client, book["admin_headers"], server_id, run_jobs)

    listed = closed_orders(client, headers, account.login)
    assert listed["total"] == 1, "the trade closed a moment ago is listed after this sync"
    row = listed["list"][0]
    assert row["order_number"] == str(trade["position"])
    assert row["close_price"] == "1.08250" and row["volume"] == "0.10"
    # The run went up to the server's clock, whose second is the one the trade closed in.
    watermark = datetime.fromisoformat(state["watermark"]).replace(tzinfo=UTC)
    assert watermark == closed_at.replace(microsecond=0)


def test_what_a_sync_reads_again_stays_one_row(
    client, factory, book, server_id, sim, stopped_clock, run_jobs, app, monkeypatch
):
    account, headers = trader(client, factory, book)
    close_a_trade(sim, account.login)
    admin = book["admin_headers"]
    sync_now(client, admin, server_id, run_jobs)

    def stored():
        db.session.expire_all()
        deals = db.session.scalar(select(func.count()).select_from(SyncedDeal).where(SyncedDeal.login == account.login))
        closes = db.session.scalar(
            select(func.count()).select_from(ClosedPosition).where(ClosedPosition.login == account.login)
        )
        return deals, closes

    first = stored()
    assert first == (3, 1), "the deposit, the opening and the closing deal; one closed position"

    # The same second again (the overlap, and the end included once more): nothing doubles.
    sync_now(client, admin, server_id, run_jobs)
    assert stored() == first
    # Windows of five seconds from the last end: the first trade's second is an edge, read by the
    # window that ends there and by the one that starts there.
    monkeypatch.setitem(app.config, "SYNC_WINDOW_SECONDS", 5)
    monkeypatch.setitem(app.config, "SYNC_OVERLAP_SECONDS", 20)
    stopped_clock["moment"] += timedelta(seconds=5)
    opened = (stopped_clock["moment"] - timedelta(seconds=2)).isoformat()
    close_a_trade(sim, account.login, close_price="1.08300", open_time=opened)
    state = sync_now(client, admin, server_id, run_jobs)
    assert state["last_counts"]["windows"] == 5, "from 20 s before the last end, five seconds a window"
    assert stored() == (5, 2)
    assert closed_orders(client, headers, account.login)["total"] == 2


def test_the_adapter_asks_for_the_last_second_and_its_windows_do_not_overlap(
    book, server_id, sim, stopped_clock, monkeypatch, client, factory
):
    account, _ = trader(client, factory, book)
    close_a_trade(sim, account.login)
    gateway = gateway_for(account.server)
    now = gateway.server_time()
    calls = []
    original = MT5WebAPIGateway._call

    def recording(self, method, path, **kwargs):
        calls.append((path, kwargs.get("params")))
        return original(self, method, path, **kwargs)

    monkeypatch.setattr(MT5WebAPIGateway, "_call", recording)
    monkeypatch.setattr(gateway, "window", timedelta(hours=1))
    deals = list(gateway.iter_deals([account.login], now - timedelta(hours=3), now))
    windows = [params for path, params in calls if path == "/api/deal/get_batch"]
    assert len(windows) == 3
    assert all(later["from"] == earlier["to"] + 1 for earlier, later in zip(windows, windows[1:], strict=False))
    assert windows[-1]["to"] == gateway.clock.to_server(now), "the end's own second is asked for"
    assert sorted(d.entry for d in deals if d.action in ("buy", "sell")) == ["in", "out"]
