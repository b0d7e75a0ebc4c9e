"""Trading-server sync against the MT simulator over HTTP, through the real MT5 adapter:
closed positions built from deals (partial closes included), snapshots that follow the
server, idempotence under repetition, concurrency and faults, the lease, the job and the route."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, update

from crm_app.extensions import db
from crm_app.integrations.trading.simulator import book as sim_book
from crm_app.integrations.trading.simulator import db as sim_db
from crm_app.integrations.trading.simulator.market import Quotes, symbol_spec, trade_profit
from crm_app.integrations.trading.simulator.wire import (
    DEAL_BUY,
    DEAL_SELL,
    ENTRY_OUT,
    OP_BUY,
    OP_SELL,
    lots_to_volume_ext,
)
from crm_app.sync import services
from crm_app.sync.models import ClosedPosition, OpenPosition, PendingOrder, SyncedDeal, SyncState
from crm_app.trading.models import TradingAccount, TradingServer
from crm_app.trading.services import gateway_for
from tests.support.trading import open_demo

SIM_SERVER = "mt5-demo"


@pytest.fixture(autouse=True)
def quick_retries(app, monkeypatch):
    monkeypatch.setitem(app.config, "SYNC_RETRY_DELAY_MS", 5)
    # Windows smaller than the history, so runs cross several of them.
    monkeypatch.setitem(app.config, "SYNC_WINDOW_SECONDS", 3 * 3600)


@pytest.fixture
def server_id(book):
    """The demo server, on the simulator's own fixed offset (UTC+2 all year), so times compare exactly."""
    server_id = book["demo_server"]["id"]
    db.session.execute(update(TradingServer).where(TradingServer.id == server_id).values(timezone="+02:00"))
    db.session.commit()
    return server_id


@pytest.fixture
def open_account(app, client, factory, book, server_id, sim, monkeypatch):
    # One client trades several demo accounts here; the quota has tests of its own.
    monkeypatch.setitem(app.config, "DEMO_ACCOUNTS_MAX_OPEN", 10)
    headers = factory.headers(client, factory.user())

    def open_one(deposit="10000.00"):
        answer = open_demo(client, headers, book)
        assert answer.status_code == 201, answer.get_json()
        account = db.session.get(TradingAccount, answer.get_json()["id"])
        if deposit:
            gateway_for(account.server).balance_operation(account.login, Decimal(deposit), f"DEP#sync{account.login}")
            let_the_clock_move_on(sim)
        return account

    return open_one


@pytest.fixture
def sim_book_access(sim):
    engine = sim_db.make_engine(sim.database_url)
    yield SimBook(engine, sim)
    engine.dispose()


class SimBook:
    """Changes made in the simulator's own book, for what its control routes do not offer
    (partial closes, closing a position, cancelling a pending order)."""

    def __init__(self, engine, sim):
        self.engine = engine
        self.sim = sim

    def now(self):
        with self.engine.begin() as conn:
            return sim_book.sim_now(conn)

    def partial_close(self, login, position_id, lots, price, when):
        """Close `lots` of a position as MT5 does: an exit deal for that volume, the rest stays open."""
        lots, price = Decimal(lots), Decimal(price)
        with self.engine.begin() as conn:
            server = sim_book.load_server(conn, SIM_SERVER)
            account = sim_book.require_account(conn, SIM_SERVER, login, for_update=True)
            position = conn.execute(select(sim_db.positions).where(sim_db.positions.c.position == position_id)).one()
            spec, side = symbol_spec(position.symbol), sim_book.position_side(position)
            group = sim_book.load_group(conn, SIM_SERVER, account.group_name)
            profit = trade_profit(spec, side, lots, position.price_open, price, Quotes.load(conn), group.currency)
            closing = lots_to_volume_ext(lots)
            storage = (position.storage * closing / position.volume_ext).quantize(Decimal("0.01"))
            order = sim_book.record_order(
                conn, server, login, spec, OP_SELL if side == "buy" else OP_BUY, closing, price, when,
                position_id=position_id,
            )  # fmt: skip
            deal = sim_book.insert_deal(
                conn, server, login, when, action=DEAL_SELL if side == "buy" else DEAL_BUY, entry=ENTRY_OUT,
                symbol=spec.name, volume_ext=closing, price=price, price_position=position.price_open, profit=profit,
                storage=storage, position_id=position_id, order_ticket=order,
            )  # fmt: skip
            remaining = position.volume_ext - closing
            positions = sim_db.positions.c.position == position_id
            if remaining:
                conn.execute(
                    sim_db.positions.update()
                    .where(positions)
                    .values(volume_ext=remaining, storage=position.storage - storage)
                )
            else:
                conn.execute(sim_db.positions.delete().where(positions))
            sim_book.change_balance(conn, account, profit + storage)
            return {"deal": deal, "profit": profit, "swap": storage}

    def close_position(self, login, position_id, price):
        with self.engine.begin() as conn:
            server = sim_book.load_server(conn, SIM_SERVER)
            account = sim_book.require_account(conn, SIM_SERVER, login, for_update=True)
            position = conn.execute(select(sim_db.positions).where(sim_db.positions.c.position == position_id)).one()
            closed = sim_book.close_position(conn, server, account, position, Decimal(price), sim_book.sim_now(conn))
        let_the_clock_move_on(self.sim)
        return closed

    def cancel_pending(self, ticket):
        with self.engine.begin() as conn:
            server = sim_book.load_server(conn, SIM_SERVER)
            order = conn.execute(select(sim_db.orders).where(sim_db.orders.c.ticket == ticket)).one()
            sim_book.cancel_pending(conn, server, order, sim_book.sim_now(conn))

    def deal_tickets(self, logins):
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(sim_db.deals.c.ticket, sim_db.deals.c.entry, sim_db.deals.c.action).where(
                    sim_db.deals.c.server_key == SIM_SERVER, sim_db.deals.c.login.in_(logins)
                )
            ).all()
        return rows


def skip_the_weekend(sim):
    """FX markets (and the simulator's traders) rest at weekends: move its clock to a weekday."""
    now = datetime.fromisoformat(sim.control("GET", "/sim/clock")["now"])
    if now.weekday() >= 4:
        monday = (now + timedelta(days=7 - now.weekday())).replace(hour=1, minute=0)
        sim.control("POST", "/sim/clock", {"advance_minutes": int((monday - now).total_seconds() // 60) + 1})


def trade(sim, login, **values):
    answer = sim.control("POST", "/sim/trades", {"server": SIM_SERVER, "login": login, "symbol": "EURUSD", **values})
    let_the_clock_move_on(sim)
    return answer


def let_the_clock_move_on(sim):
    """A run reads up to the server's clock, whole seconds: a deal stamped in that very second is
    left to the next run (its overlap). Moving the simulator's clock on makes "now" the past."""
    sim.control("POST", "/sim/clock", {"advance_minutes": 1})


def iso(moment):
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def naive(moment):
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0)


def ours(model, **where):
    db.session.expire_all()
    query = select(model).where(*[getattr(model, k) == v for k, v in where.items()])
    return db.session.scalars(query.order_by(model.id)).all()


def count(model):
    return db.session.scalar(select(func.count()).select_from(model))


def state_of(server_id):
    db.session.expire_all()
    return db.session.get(SyncState, server_id)


# Closed positions ------------------------------------------------------------------------------------


def test_closed_trades_and_partial_closes_appear_once_with_prices_times_and_money(
    server_id, open_account, sim, sim_book_access
):
    account = open_account()
    now = sim_book_access.now()
    opened_at, closed_at = now - timedelta(hours=5), now - timedelta(hours=4, minutes=30)
    whole = trade(
        sim, account.login, side="BUY", volume="0.50", open_price="1.08000", close_price="1.08250",
        open_time=iso(opened_at), close_time=iso(closed_at), commission="3.00", swap="-1.25", sl="1.07500",
        tp="1.08500",
    )  # fmt: skip

    # Open 2.00 lots, then close 1.00 and later the other 1.00 at other prices.
    big_open = now - timedelta(hours=3)
    big = trade(
        sim, account.login, side="SELL", volume="2.00", open_price="1.09000", open_time=iso(big_open),
        commission="7.00", swap="-4.00",
    )  # fmt: skip
    first_at, second_at = now - timedelta(hours=2), now - timedelta(minutes=30)
    first = sim_book_access.partial_close(account.login, big["position"], "1.00", "1.08800", first_at)
    second = sim_book_access.partial_close(account.login, big["position"], "1.00", "1.09100", second_at)

    result = services.sync_server(server_id)
    assert result.status == "succeeded", result.as_dict()

    whole_row = ours(ClosedPosition, position_id=whole["position"])
    assert len(whole_row) == 1
    row = whole_row[0]
    assert (row.side, row.symbol, row.login, row.trading_account_id) == ("buy", "EURUSD", account.login, account.id)
    assert row.volume == Decimal("0.50")
    assert (row.open_price, row.close_price) == (Decimal("1.08000"), Decimal("1.08250"))
    assert (row.open_time, row.close_time) == (naive(opened_at), naive(closed_at))
    assert row.profit == Decimal(whole["profit"]) == Decimal("125.00")
    assert (row.commission, row.swap) == (Decimal("-3.00"), Decimal("-1.25"))
    assert (row.sl, row.tp) == (Decimal("1.07500"), Decimal("1.08500")), "from the opening order"
    assert row.close_deal_ticket == whole["deals"][1] and row.open_deal_tickets == [whole["deals"][0]]

    partial = ours(ClosedPosition, position_id=big["position"])
    assert [r.close_deal_ticket for r in partial] == [first["deal"], second["deal"]]
    for part, close_price, closed, raw in (
        (partial[0], "1.08800", first_at, first),
        (partial[1], "1.09100", second_at, second),
    ):
        assert (part.side, part.volume) == ("sell", Decimal("1.00"))
        assert (part.open_price, part.open_time) == (Decimal("1.09000"), naive(big_open))
        assert (part.close_price, part.close_time) == (Decimal(close_price), naive(closed))
        assert part.profit == raw["profit"]
        assert part.commission == Decimal("-3.50"), "each close carries its share of the opening commission"
        assert part.swap == raw["swap"] == Decimal("-2.00")
        assert part.open_deal_tickets == [big["deals"][0]]
    assert partial[0].profit == Decimal("200.00") and partial[1].profit == Decimal("-100.00")
    assert not ours(OpenPosition, ticket=big["position"]), "fully closed: no longer an open position"

    deals = sorted(ours(SyncedDeal, login=account.login), key=lambda d: (d.time, d.ticket))
    assert [(d.action, d.entry) for d in deals] == [
        ("buy", "in"), ("sell", "out"), ("sell", "in"), ("buy", "out"), ("buy", "out"), ("balance", "none")
    ]  # fmt: skip


def stored_rows():
    return (
        [(r.id, r.ticket) for r in ours(SyncedDeal)],
        [(r.id, r.close_deal_ticket, r.profit, r.commission) for r in ours(ClosedPosition)],
    )


def test_a_second_sync_changes_nothing(server_id, open_account, sim, sim_book_access):
    account = open_account()
    now = sim_book_access.now()
    for index in range(5):
        trade(
            sim, account.login, side="BUY" if index % 2 else "SELL", volume="0.10", close_price="1.08100",
            open_time=iso(now - timedelta(hours=6 - index)), close_time=iso(now - timedelta(hours=5 - index)),
        )  # fmt: skip
    assert services.sync_server(server_id).status == "succeeded"
    first = stored_rows()
    synced_at = [r.synced_at for r in ours(ClosedPosition)]
    assert len(first[0]) == 11 and len(first[1]) == 5

    assert services.sync_server(server_id).status == "succeeded"
    assert stored_rows() == first
    assert [r.synced_at for r in ours(ClosedPosition)] == synced_at, "unchanged rows are not rewritten"


def test_two_syncs_at_once_double_nothing(app, server_id, open_account, sim, sim_book_access):
    accounts = [open_account() for _ in range(3)]
    now = sim_book_access.now()
    for account in accounts:
        for index in range(3):
            trade(
                sim, account.login, side="BUY", volume="0.20", close_price="1.08300",
                open_time=iso(now - timedelta(hours=4, minutes=index)), close_time=iso(now - timedelta(hours=1)),
            )  # fmt: skip
    results = []

    def run():
        with app.app_context():
            results.append(services.sync_server(server_id).status)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "succeeded" in results and set(results) <= {"succeeded", "already_running"}, results
    assert services.sync_server(server_id).status == "succeeded"
    assert count(ClosedPosition) == 9
    assert count(SyncedDeal) == 3 * (1 + 3 * 2)
    tickets = [d.ticket for d in ours(SyncedDeal)]
    assert len(tickets) == len(set(tickets))


# Snapshots -------------------------------------------------------------------------------------------


def test_positions_and_pending_orders_closed_on_the_server_disappear_from_ours(
    server_id, open_account, sim, sim_book_access
):
    account = open_account()
    kept = trade(sim, account.login, side="BUY", volume="0.30", open_price="1.08000", swap="-0.40")
    closing = trade(sim, account.login, side="SELL", volume="0.10", open_price="1.08100")
    quote = sim.control("POST", "/sim/prices", {"symbol": "EURUSD", "bid": "1.08500"})
    limit = sim.control(
        "POST",
        "/sim/pending-orders",
        {"server": SIM_SERVER, "login": account.login, "symbol": "EURUSD", "type": "BUY_LIMIT", "volume": "0.20",
         "price": "1.07000", "sl": "1.06000", "tp": "1.09000"},
    )  # fmt: skip
    stop = sim.control(
        "POST",
        "/sim/pending-orders",
        {"server": SIM_SERVER, "login": account.login, "symbol": "EURUSD", "type": "SELL_STOP", "volume": "0.10",
         "price": "1.07500"},
    )  # fmt: skip
    assert services.sync_server(server_id).status == "succeeded"
    assert {p.ticket for p in ours(OpenPosition)} == {kept["position"], closing["position"]}
    assert {o.ticket for o in ours(PendingOrder)} == {limit["order"], stop["order"]}
    position = ours(OpenPosition, ticket=kept["position"])[0]
    assert (position.side, position.volume, position.open_price) == ("buy", Decimal("0.30"), Decimal("1.08000"))
    assert position.current_price == Decimal(quote["bid"]) and position.swap == Decimal("-0.40")
    assert position.trading_account_id == account.id
    order = ours(PendingOrder, ticket=limit["order"])[0]
    assert (order.type, order.volume, order.price) == ("buy_limit", Decimal("0.20"), Decimal("1.07000"))
    assert (order.sl, order.tp) == (Decimal("1.06000"), Decimal("1.09000"))

    sim_book_access.close_position(account.login, closing["position"], "1.08500")
    sim_book_access.cancel_pending(stop["order"])
    assert services.sync_server(server_id).status == "succeeded"
    assert {p.ticket for p in ours(OpenPosition)} == {kept["position"]}
    assert {o.ticket for o in ours(PendingOrder)} == {limit["order"]}
    closed = ours(ClosedPosition, position_id=closing["position"])
    assert len(closed) == 1 and closed[0].side == "sell" and closed[0].close_price == Decimal("1.08500")

    db.session.refresh(account)
    server_state = gateway_for(account.server).trade_state(account.login)
    assert account.balance == server_state.balance and account.equity == server_state.equity
    assert account.figures_read_at is not None


# Faults, failures and the lease ------------------------------------------------------------------------


def test_activity_under_faults_converges_to_exactly_the_servers_deals(server_id, open_account, sim, sim_book_access):
    skip_the_weekend(sim)
    accounts = [open_account("50000.00") for _ in range(4)]
    logins = [a.login for a in accounts]
    statuses = []
    sim.faults(error_rate=0.3, lost_answer_rate=0.3, servers=[SIM_SERVER])
    try:
        for round_number in range(4):
            sim.control("POST", "/sim/activity", {"server": SIM_SERVER, "logins": logins, "minutes": 30,
                                                  "seed": 1000 + round_number})  # fmt: skip
            statuses.append(services.sync_server(server_id).status)
        # A real server's clock keeps moving; the simulator's stands still between calls, and a
        # deal stamped in the very second a run reads the clock belongs to the next window.
        let_the_clock_move_on(sim)
        for _ in range(25):
            statuses.append(services.sync_server(server_id).status)
            if statuses[-1] == "succeeded" and statuses[-2] == "succeeded":
                break
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert statuses[-1] == "succeeded", statuses
    assert state_of(server_id).last_counts["deals"] > 0

    server_deals = sim_book_access.deal_tickets(logins)
    assert len(server_deals) > 12, "the activity should have traded"
    our_deals = ours(SyncedDeal)
    assert sorted(d.ticket for d in our_deals) == sorted(row.ticket for row in server_deals)
    closing = sorted(row.ticket for row in server_deals if row.entry == ENTRY_OUT and row.action in (0, 1))
    assert sorted(r.close_deal_ticket for r in ours(ClosedPosition)) == closing

    gateway = gateway_for(accounts[0].server)
    now = gateway.server_time()
    through_adapter = list(gateway.iter_deals(logins, now - timedelta(days=3), now + timedelta(minutes=1)))
    assert sorted(d.ticket for d in through_adapter) == sorted(d.ticket for d in our_deals)
    by_ticket = {d.ticket: d for d in our_deals}
    for deal in through_adapter:
        mine = by_ticket[deal.ticket]
        assert (mine.profit, mine.commission, mine.swap, mine.volume) == (
            deal.profit, deal.commission, deal.swap, deal.volume
        )  # fmt: skip
    assert {p.ticket for p in ours(OpenPosition)} == {p.ticket for p in gateway.list_positions(logins)}
    assert {o.ticket for o in ours(PendingOrder)} == {o.ticket for o in gateway.list_pending_orders(logins)}
    for row in ours(ClosedPosition):
        assert row.open_price is not None and row.open_time <= row.close_time


def test_a_failed_run_keeps_the_watermark_and_says_why(server_id, open_account, sim, sim_book_access):
    account = open_account()
    assert services.sync_server(server_id).status == "succeeded"
    watermark = state_of(server_id).watermark
    assert watermark is not None

    now = sim_book_access.now()
    trade(sim, account.login, side="BUY", volume="0.10", close_price="1.08200", close_time=iso(now))
    sim.faults(error_rate=1, servers=[SIM_SERVER])
    try:
        result = services.sync_server(server_id)
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert result.status == "failed" and "TransientError" in result.error
    state = state_of(server_id)
    assert state.watermark == watermark
    assert (state.last_status, state.running, state.lease_owner) == ("failed", False, None)
    assert "TransientError" in state.last_error

    assert services.sync_server(server_id).status == "succeeded"
    state = state_of(server_id)
    assert state.last_status == "succeeded" and state.last_error is None and state.watermark > watermark
    assert len(ours(ClosedPosition)) == 1


def test_a_run_that_crashes_half_way_frees_the_server_and_the_next_one_resumes(
    server_id, open_account, sim, sim_book_access, monkeypatch
):
    account = open_account()
    now = sim_book_access.now()
    trade(
        sim, account.login, side="SELL", volume="0.10", close_price="1.07900",
        open_time=iso(now - timedelta(hours=7)), close_time=iso(now - timedelta(hours=6)),
    )  # fmt: skip

    def crash(self, logins):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(services.SyncRun, "refresh_snapshots", crash)
    with pytest.raises(RuntimeError):
        services.sync_server(server_id)
    state = state_of(server_id)
    assert state.running is False and "worker killed" in state.last_error
    assert state.watermark is not None, "the windows stored before the crash count"
    assert len(ours(ClosedPosition)) == 1
    monkeypatch.undo()
    assert services.sync_server(server_id).status == "succeeded"
    assert len(ours(ClosedPosition)) == 1 and len(ours(SyncedDeal)) == 3


def test_the_lease_stops_a_second_run_until_it_is_freed_or_expires(
    app, server_id, open_account, sim, sim_book_access, monkeypatch
):
    account = open_account()
    trade(sim, account.login, side="BUY", volume="0.10", close_price="1.08200")
    assert services.acquire_lease(server_id, "someone-else")
    result = services.sync_server(server_id)
    assert result.status == "already_running"
    assert count(SyncedDeal) == 0

    # A run that died keeps its lease only until it expires.
    db.session.execute(
        update(SyncState)
        .where(SyncState.server_id == server_id)
        .values(lease_expires_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1))
    )
    db.session.commit()
    assert services.sync_server(server_id).status == "succeeded"
    assert count(SyncedDeal) == 3

    # A live run, slowed down by the server: a second one at the same time does nothing.
    started = threading.Event()
    statuses = []
    real_pull_batch = services.SyncRun.pull_batch

    def slow_pull_batch(self, *args):
        started.set()
        sim.faults(latency_ms=300, servers=[SIM_SERVER])
        return real_pull_batch(self, *args)

    monkeypatch.setattr(services.SyncRun, "pull_batch", slow_pull_batch)

    def run():
        with app.app_context():
            statuses.append(services.sync_server(server_id).status)

    thread = threading.Thread(target=run)
    try:
        thread.start()
        assert started.wait(10)
        second = services.sync_server(server_id)
    finally:
        thread.join()
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert second.status == "already_running"
    assert statuses == ["succeeded"]
    assert count(SyncedDeal) == 3


def test_an_account_met_after_the_first_sync_gets_its_earlier_history(server_id, open_account, sim, sim_book_access):
    open_account()
    assert services.sync_server(server_id).status == "succeeded"
    late = open_account()
    now = sim_book_access.now()
    # Stamped long before the watermark: the overlap alone would never look back that far.
    old = trade(sim, late.login, side="BUY", volume="0.10", close_price="1.08200",
                open_time=iso(now - timedelta(hours=3)), close_time=iso(now - timedelta(hours=2)))  # fmt: skip
    result = services.sync_server(server_id)
    assert result.status == "succeeded" and result.counts["backfilled_accounts"] == 1
    assert [r.close_deal_ticket for r in ours(ClosedPosition)] == [old["deals"][1]]


# The job and the route ------------------------------------------------------------------------------


def test_admin_sync_answers_202_and_a_worker_runs_the_job(client, book, server_id, open_account, sim, run_jobs):
    account = open_account()
    trade(sim, account.login, side="BUY", volume="0.10", close_price="1.08200")
    headers = book["admin_headers"]

    before = client.get("/api/v1/admin/sync", headers=headers)
    assert before.status_code == 200
    assert {row["server_id"]: row["last_status"] for row in before.get_json()["list"]}[server_id] is None

    response = client.post("/api/v1/admin/sync", headers=headers, json={"server_id": server_id})
    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    assert [job["server_id"] for job in answer["jobs"]] == [server_id]
    assert answer["jobs"][0]["job_id"] and answer["jobs"][0]["status"] == "queued"
    assert [row["server_id"] for row in answer["servers"]] == [server_id]
    again = client.post("/api/v1/admin/sync", headers=headers, json={"server_id": server_id}).get_json()
    assert again["jobs"][0]["job_id"] == answer["jobs"][0]["job_id"], "one queued sync per server"

    run_jobs()
    states = {row["server_id"]: row for row in client.get("/api/v1/admin/sync", headers=headers).get_json()["list"]}
    mine = states[server_id]
    assert mine["last_status"] == "succeeded" and mine["running"] is False and mine["watermark"]
    assert mine["last_counts"]["closed_positions"] == 1 and mine["runs"] == 1
    assert count(ClosedPosition) == 1

    # The job is done: the next request queues a new one.
    third = client.post("/api/v1/admin/sync", headers=headers, json={"server_id": server_id}).get_json()
    assert third["jobs"][0]["job_id"] != answer["jobs"][0]["job_id"]


def test_admin_sync_of_every_server_and_the_periodic_job(client, book, server_id, open_account, run_jobs):
    from workers.sync import sync_all_servers

    open_account()
    response = client.post("/api/v1/admin/sync", headers=book["admin_headers"], json={})
    assert response.status_code == 202
    queued = {job["server_id"]: job["job_id"] for job in response.get_json()["jobs"]}
    assert set(queued) == {book["demo_server"]["id"], book["live_server"]["id"]}
    periodic = {job["server_id"]: job["job_id"] for job in sync_all_servers()}
    assert periodic == queued, "the periodic job does not queue a second sync of a server"
    run_jobs()
    assert {s.last_status for s in db.session.scalars(select(SyncState).execution_options(populate_existing=True))} == {
        "succeeded"
    }


def test_admin_sync_needs_an_admin_and_a_known_enabled_server(client, factory, book, server_id):
    headers = factory.headers(client, factory.user())
    assert client.post("/api/v1/admin/sync", headers=headers, json={}).status_code == 403
    assert client.get("/api/v1/admin/sync", headers=headers).status_code == 403
    assert client.post("/api/v1/admin/sync", json={}).status_code == 401
    admin = book["admin_headers"]
    assert client.post("/api/v1/admin/sync", headers=admin, json={"server_id": 999999}).status_code == 404
    assert client.post("/api/v1/admin/sync", headers=admin, json={"server": 1}).status_code == 422
    db.session.execute(update(TradingServer).where(TradingServer.id == server_id).values(enabled=False))
    db.session.commit()
    refused = client.post("/api/v1/admin/sync", headers=admin, json={"server_id": server_id})
    assert refused.status_code == 422 and refused.get_json()["code"] == "trading_server_disabled"


# Closed positions from deals, without a server ---------------------------------------------------------


def deal(ticket, action, entry, volume, price, minute, commission="0", profit="0", swap="0"):
    return SimpleNamespace(
        ticket=ticket, login=7, time=datetime(2026, 1, 5, 10, minute), action=action, entry=entry, symbol="EURUSD",
        volume=Decimal(volume), price=Decimal(price), profit=Decimal(profit), commission=Decimal(commission),
        swap=Decimal(swap), position_id=100, order_ticket=ticket + 1000,
    )  # fmt: skip


def test_commission_shares_of_three_partial_closes_add_up_to_the_opening_commission():
    rows = services.closed_positions_of(
        [
            deal(1, "buy", "in", "0.30", "1.10000", 0, commission="-1.00"),
            deal(2, "sell", "out", "0.10", "1.10100", 1),
            deal(3, "sell", "out", "0.10", "1.10200", 2),
            deal(4, "sell", "out", "0.10", "1.10300", 3, commission="-0.50"),
        ]
    )
    # -1.00 x 1/3 = -0.33, then -0.67 x 1/2 = -0.335 (half up: -0.34), then the rest, -0.33, plus -0.50.
    assert [r["commission"] for r in rows] == [Decimal("-0.33"), Decimal("-0.34"), Decimal("-0.83")]
    assert all(r["open_price"] == Decimal("1.10000") and r["side"] == "buy" for r in rows)


def test_several_opening_deals_give_a_volume_weighted_open_price_and_the_first_open_time():
    rows = services.closed_positions_of(
        [
            deal(2, "sell", "in", "1.00", "1.20000", 5),
            deal(1, "sell", "in", "1.00", "1.10000", 0),
            deal(3, "sell", "in", "2.00", "1.30000", 7),
            deal(4, "buy", "out", "4.00", "1.25000", 9),
        ]
    )
    assert len(rows) == 1
    assert rows[0]["open_price"] == Decimal("1.22500000") and rows[0]["side"] == "sell"
    assert rows[0]["open_time"] == datetime(2026, 1, 5, 10, 0) and rows[0]["open_deal_tickets"] == [1, 2, 3]


def test_a_netting_reversal_closes_what_was_open_and_opens_the_rest():
    rows = services.closed_positions_of(
        [
            deal(1, "buy", "in", "1.00", "1.10000", 0, commission="-2.00"),
            deal(2, "sell", "inout", "3.00", "1.11000", 1, commission="-6.00"),
            deal(3, "buy", "out", "2.00", "1.10500", 2),
        ]
    )
    first, second = rows
    assert (first["side"], first["volume"], first["commission"]) == ("buy", Decimal("1.00"), Decimal("-4.00"))
    assert (second["side"], second["volume"], second["open_price"]) == ("sell", Decimal("2.00"), Decimal("1.11000"))
    assert second["commission"] == Decimal("-4.00") and second["open_deal_tickets"] == [2]


def test_a_close_without_its_opening_deal_still_makes_a_row():
    (row,) = services.closed_positions_of([deal(9, "buy", "out", "0.50", "1.10000", 0, profit="12.00")])
    assert (row["side"], row["volume"], row["open_price"], row["open_time"]) == ("sell", Decimal("0.50"), None, None)
    assert row["profit"] == Decimal("12.00")
