"""The MT5 Web API adapter against the MT simulator over real HTTP: the code that would talk
to a real MetaTrader 5 server is the code under test. No CRM app, no PostgreSQL needed."""

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from crm_app.integrations.trading import gateway as gw
from crm_app.integrations.trading import make_gateway as gateway_for_connector
from crm_app.integrations.trading import mt5_webapi
from crm_app.integrations.trading.mt5_webapi import (
    MT5WebAPIGateway,
    ServerClock,
    challenge_answer,
    forget_pinned_sessions,
    manager_password_hash,
    pinned_session,
)
from tests.support.mt_sim import TIMEZONE_MINUTES, simulated_servers, start_simulator

USD_GROUP = "demo\\standard-usd"
MAIN_PASSWORD = "Trader2024x"
INVESTOR_PASSWORD = "Watcher2024y"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with start_simulator(tmp_path_factory.mktemp("mt-sim")) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_sessions_and_no_faults(request):
    """Each test logs in afresh and starts without faults."""
    forget_pinned_sessions()
    yield
    forget_pinned_sessions()
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").faults()


def make_gateway(sim, server="mt5-demo", **options):
    settings = {"timezone": TIMEZONE_MINUTES, "timeout": 5.0, **options}
    password = settings.pop("manager_password", sim.manager_password)
    login = settings.pop("manager_login", sim.manager_login)
    return MT5WebAPIGateway(sim.server_url(server), login, password, **settings)


@pytest.fixture
def gateway(sim):
    return make_gateway(sim)


def new_account(gateway, group=USD_GROUP, **fields):
    values = {
        "group": group,
        "name": "Ann Lee",
        "leverage": 100,
        "main_password": MAIN_PASSWORD,
        "investor_password": INVESTOR_PASSWORD,
        "email": "ann@example.test",
        "country": "Cyprus",
        **fields,
    }
    return gateway.create_account(gw.NewAccount(**values))


def funded_account(gateway, amount="1000.00"):
    account = new_account(gateway)
    gateway.balance_operation(account.login, Decimal(amount), "DEPOSIT#seed")
    return account


def sim_clock(sim):
    return datetime.fromisoformat(sim.control("GET", "/sim/clock")["now"])


def count_logins(monkeypatch):
    calls = []
    original = MT5WebAPIGateway._login

    def counting(self, session):
        calls.append(self.base_url)
        return original(self, session)

    monkeypatch.setattr(MT5WebAPIGateway, "_login", counting)
    return calls


# The handshake --------------------------------------------------------------------------------


def test_password_hash_and_answer_match_metaquotes_published_example():
    """Web API docs: MD5(MD5('Password1')+'WebAPI') and SRV_RAND_ANSWER for SRV_RAND 73007dc7..."""
    password_hash = manager_password_hash("Password1")
    assert password_hash.hex() == "904ba8ecb16273d2f0ae9c3b8a023752"
    assert challenge_answer(password_hash, "73007dc7184747ce0f7c98516ef1c851") == "77fe51827f7fa69dd80fbec9aa33f1bb"


def test_first_call_logs_in_and_later_calls_reuse_the_session(sim, gateway, monkeypatch):
    logins = count_logins(monkeypatch)
    first = gateway.server_time()
    second = gateway.server_time()
    assert logins == [gateway.base_url]
    assert abs(first - sim_clock(sim)) < timedelta(seconds=5)
    assert second >= first


def test_wrong_manager_password_is_permission_denied_with_mt_retcode(sim):
    gateway = make_gateway(sim, manager_password="Not-The-Password1")
    with pytest.raises(gw.PermissionDenied) as caught:
        gateway.server_time()
    assert caught.value.retcode == 1001  # MT_RET_AUTH_ACCOUNT_INVALID


def test_unknown_manager_login_is_permission_denied(sim):
    with pytest.raises(gw.PermissionDenied):
        make_gateway(sim, manager_login=999999).server_time()


def test_expired_session_is_renewed_transparently(tmp_path, monkeypatch):
    with start_simulator(tmp_path, session_idle_seconds=0.5) as short_lived:
        gateway = make_gateway(short_lived)
        logins = count_logins(monkeypatch)
        account = new_account(gateway)
        before = len(logins)  # on a loaded machine the setup's own calls may outlive a session
        time.sleep(1.0)  # the server forgets the idle session and answers 403
        assert gateway.get_account(account.login).login == account.login
        assert len(logins) == before + 1


def test_one_pinned_session_per_server_and_manager_and_a_fresh_registry_after_fork(sim, monkeypatch):
    first = pinned_session(sim.server_url("mt5-demo"), sim.manager_login)
    assert pinned_session(sim.server_url("mt5-demo"), sim.manager_login) is first
    assert pinned_session(sim.server_url("mt5-live"), sim.manager_login) is not first
    monkeypatch.setattr(mt5_webapi.os, "getpid", lambda: -1)  # what a forked child sees
    assert pinned_session(sim.server_url("mt5-demo"), sim.manager_login) is not first


def test_concurrent_threads_share_the_pinned_session_safely(sim, gateway, monkeypatch):
    logins = count_logins(monkeypatch)
    account = funded_account(gateway)
    errors = []

    def read():
        try:
            for _ in range(5):
                gateway.trade_state(account.login)
        except gw.TradingError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(logins) == 1


# Accounts ---------------------------------------------------------------------------------------


def test_create_account_takes_consecutive_logins_from_the_server_range(sim, gateway):
    first, second = new_account(gateway), new_account(gateway, name="Bo Chan")
    assert 5900000 <= first.login <= 5999999
    assert second.login == first.login + 1
    assert first.group == USD_GROUP and first.leverage == 100 and first.name == "Ann Lee"
    assert abs(first.registration - sim_clock(sim)) < timedelta(seconds=5)


def test_exhausted_login_range_is_refused_with_3002(sim):
    gateway = make_gateway(sim, server="mt5-tiny")
    for _ in range(3):
        new_account(gateway)
    with pytest.raises(gw.BusinessError) as caught:
        new_account(gateway)
    assert caught.value.retcode == 3002  # MT_RET_USR_LOGIN_EXHAUSTED


def test_explicit_login_is_kept_and_a_taken_one_is_account_exists(gateway):
    account = new_account(gateway, login=5990001, comment="APP#42")
    assert account.login == 5990001
    assert gateway.get_account(5990001).comment == "APP#42"
    with pytest.raises(gw.AccountExists) as caught:
        new_account(gateway, login=5990001)
    assert caught.value.retcode == 3004


def test_unknown_login_is_account_not_found(gateway):
    with pytest.raises(gw.AccountNotFound):
        gateway.get_account(5999998)
    with pytest.raises(gw.AccountNotFound):
        gateway.trade_state(5999998)


def test_unknown_group_is_refused_as_mt_documents_it(gateway):
    with pytest.raises(gw.PermissionDenied) as caught:
        new_account(gateway, group="demo\\nonexistent")
    assert caught.value.retcode == 8  # user/add: "the group does not exist" answers 8


def test_update_leverage_name_and_group(gateway):
    account = new_account(gateway)
    updated = gateway.update_account(account.login, leverage=200, name="Ann Lee-Smith", group="demo\\pro-usd")
    assert (updated.leverage, updated.name, updated.group) == (200, "Ann Lee-Smith", "demo\\pro-usd")
    assert gateway.get_account(account.login).leverage == 200
    with pytest.raises(gw.InvalidRequest):
        gateway.update_account(account.login, leverage=1000)  # above the group's 1:500
    with pytest.raises(gw.BusinessError) as caught:
        gateway.update_account(account.login, group="demo\\standard-eur")
    assert caught.value.retcode == 3010  # another deposit currency


@pytest.mark.parametrize(
    ("server", "group", "password"),
    [
        ("mt5-demo", USD_GROUP, "short1"),  # under 8
        ("mt5-demo", USD_GROUP, "abcdefghij"),  # one character type
        ("mt5-demo", USD_GROUP, "Abcdefgh12345678X"),  # over 16
        ("mt5-demo", "demo\\strict-usd", "Abcdefgh1"),  # strict groups want a special character too
        ("mt4-live", "real-standard-usd", "Abcdefgh12345678"),  # MT4 keeps 15 at most
    ],
)
def test_passwords_breaking_mt_rules_are_invalid_password(sim, server, group, password):
    gateway = make_gateway(sim, server=server)
    with pytest.raises(gw.InvalidPassword) as caught:
        new_account(gateway, group=group, main_password=password)
    assert caught.value.retcode == 3006


def test_mt4_server_behind_the_same_wire_format(sim):
    gateway = make_gateway(sim, server="mt4-live")
    account = new_account(gateway, group="real-standard-usd", main_password="abc12", investor_password="xyz34")
    assert 4100000 <= account.login <= 4199999


def test_check_and_change_main_and_investor_passwords(gateway):
    account = new_account(gateway)
    assert gateway.check_password(account.login, MAIN_PASSWORD, "main")
    assert gateway.check_password(account.login, INVESTOR_PASSWORD, "investor")
    assert not gateway.check_password(account.login, INVESTOR_PASSWORD, "main")

    gateway.change_password(account.login, "NewMain#2025", "main")
    gateway.change_password(account.login, "NewWatch#2025", "investor")
    assert gateway.check_password(account.login, "NewMain#2025")
    assert not gateway.check_password(account.login, MAIN_PASSWORD)
    assert gateway.check_password(account.login, "NewWatch#2025", "investor")

    with pytest.raises(gw.InvalidPassword):
        gateway.change_password(account.login, "weak", "main")
    with pytest.raises(gw.InvalidRequest):
        gateway.change_password(account.login, "NewMain#2026", "api")


# Money -----------------------------------------------------------------------------------------------


def test_deposit_and_withdrawal_move_the_trade_state_exactly(gateway):
    account = new_account(gateway)
    deposit = gateway.balance_operation(account.login, Decimal("1000.10"), "DEPOSIT#d1")
    withdrawal = gateway.balance_operation(account.login, Decimal("-0.30"), "WITHDRAWAL#w1")
    assert withdrawal > deposit  # deal tickets only grow
    state = gateway.trade_state(account.login)
    assert state.currency == "USD"
    assert (state.balance, state.credit, state.equity) == (Decimal("999.80"), Decimal("0.00"), Decimal("999.80"))
    assert state.margin_free == Decimal("999.80") and state.margin == Decimal("0.00")
    assert all(isinstance(v, Decimal) for v in (state.balance, state.equity, state.margin_level))


def test_trade_state_currency_comes_from_the_group(gateway):
    account = new_account(gateway, group="demo\\standard-eur")
    assert gateway.trade_state(account.login).currency == "EUR"


def test_withdrawal_beyond_free_margin_is_no_money_10019(sim, gateway):
    account = funded_account(gateway, "1000.00")
    # One lot of XAUUSD at 1:100 ties up about 2,350 USD of margin... too much; 0.2 lot ~ 470.
    sim.control("POST", "/sim/trades", {"login": account.login, "symbol": "XAUUSD", "side": "BUY", "volume": "0.20"})
    state = gateway.trade_state(account.login)
    assert Decimal("0") < state.margin_free < Decimal("1000.00")
    with pytest.raises(gw.NoMoney) as caught:
        gateway.balance_operation(account.login, -(state.margin_free + 10), "WITHDRAWAL#w2")
    assert caught.value.retcode == 10019
    assert gateway.trade_state(account.login).balance == state.balance  # nothing taken
    gateway.balance_operation(account.login, Decimal("-100.00"), "WITHDRAWAL#w3")


def test_credit_in_and_out_and_credit_beyond_what_was_given_is_no_money(gateway):
    account = funded_account(gateway, "100.00")
    gateway.balance_operation(account.login, Decimal("50.00"), "BONUS#b1", credit=True)
    state = gateway.trade_state(account.login)
    assert (state.balance, state.credit, state.equity) == (Decimal("100.00"), Decimal("50.00"), Decimal("150.00"))
    with pytest.raises(gw.NoMoney):
        gateway.balance_operation(account.login, Decimal("-60.00"), "BONUS#b2", credit=True)
    gateway.balance_operation(account.login, Decimal("-50.00"), "BONUS#b3", credit=True)
    assert gateway.trade_state(account.login).credit == Decimal("0.00")


def test_comment_longer_than_mt_keeps_is_refused_before_sending(gateway):
    account = new_account(gateway)
    with pytest.raises(gw.InvalidRequest):
        gateway.balance_operation(account.login, Decimal("1"), "D" * 32)
    assert gateway.trade_state(account.login).balance == Decimal("0.00")


def test_find_balance_operation_by_its_comment(gateway):
    account = new_account(gateway)
    since = datetime.now(UTC)
    ticket = gateway.balance_operation(account.login, Decimal("25.00"), gw.operation_comment("DEPOSIT", "k-77"))
    gateway.balance_operation(account.login, Decimal("5.00"), "DEPOSIT#other")
    found = gateway.find_balance_operation(account.login, "DEPOSIT#k-77", since)
    assert (found.ticket, found.action, found.profit, found.comment) == (
        ticket,
        "balance",
        Decimal("25.00"),
        "DEPOSIT#k-77",
    )
    assert gateway.find_balance_operation(account.login, "DEPOSIT#missing", since) is None


# Trading data -------------------------------------------------------------------------------------------


def test_deals_history_positions_and_orders_after_sim_trades(sim, gateway):
    account = funded_account(gateway, "10000.00")
    opened_at = (sim_clock(sim) - timedelta(hours=3)).replace(microsecond=0)
    closed_at = opened_at + timedelta(hours=1)
    closed = sim.control(
        "POST",
        "/sim/trades",
        {
            "login": account.login,
            "symbol": "EURUSD",
            "side": "BUY",
            "volume": "1.00",
            "open_price": "1.08000",
            "close_price": "1.08500",
            "open_time": opened_at.isoformat(),
            "close_time": closed_at.isoformat(),
            "commission": "7.00",
            "swap": "-1.25",
        },
    )
    still_open = sim.control(
        "POST",
        "/sim/trades",
        {"login": account.login, "symbol": "USDJPY", "side": "SELL", "volume": "0.25", "sl": "160.000"},
    )
    pending = sim.control(
        "POST",
        "/sim/pending-orders",
        {
            "login": account.login,
            "symbol": "EURUSD",
            "type": "SELL_STOP_LIMIT",
            "volume": "0.1",
            "price": "1.05000",
            "stop_limit_price": "1.05100",
            "tp": "1.04000",
        },
    )

    start, end = opened_at - timedelta(minutes=1), sim_clock(sim) + timedelta(minutes=1)
    deals = [d for d in gateway.iter_deals([account.login], start, end) if d.action in ("buy", "sell")]
    entry, exit_, open_entry = deals
    assert (entry.ticket, entry.entry, entry.time, entry.volume) == (closed["deals"][0], "in", opened_at, Decimal("1"))
    assert (entry.price, entry.commission) == (Decimal("1.08000"), Decimal("-7.00"))
    assert (exit_.ticket, exit_.entry, exit_.action, exit_.time) == (closed["deals"][1], "out", "sell", closed_at)
    assert (exit_.profit, exit_.swap, exit_.position_id) == (Decimal("500.00"), Decimal("-1.25"), closed["position"])
    assert (open_entry.symbol, open_entry.action, open_entry.volume) == ("USDJPY", "sell", Decimal("0.25"))

    history = list(gateway.iter_closed_orders([account.login], start, end))
    assert [(o.type, o.state) for o in history[:2]] == [("buy", "filled"), ("sell", "filled")]
    assert history[0].done_time == opened_at and history[1].done_time == closed_at

    [position] = gateway.list_positions([account.login])
    assert (position.ticket, position.side, position.volume) == (still_open["position"], "sell", Decimal("0.25"))
    assert position.sl == Decimal("160.000") and isinstance(position.profit, Decimal)

    [order] = gateway.list_pending_orders([account.login])
    assert (order.ticket, order.type, order.volume) == (pending["order"], "sell_stop_limit", Decimal("0.10"))
    assert (order.price, order.stop_limit_price, order.tp) == (Decimal("1.05000"), Decimal("1.05100"), Decimal("1.04"))

    state = gateway.trade_state(account.login)
    assert state.balance == Decimal("10000.00") + Decimal("500.00") - Decimal("7.00") - Decimal("1.25")


def test_long_ranges_are_cut_into_windows_and_nothing_is_lost_or_doubled(sim, monkeypatch):
    gateway = make_gateway(sim, window_seconds=3600)
    account = funded_account(gateway)
    now = sim_clock(sim).replace(microsecond=0)
    for hours_ago in (5, 3, 1):
        opened = now - timedelta(hours=hours_ago, minutes=30)
        sim.control(
            "POST",
            "/sim/trades",
            {
                "login": account.login,
                "symbol": "GBPUSD",
                "side": "SELL",
                "volume": "0.10",
                "open_price": "1.26000",
                "close_price": "1.25900",
                "open_time": opened.isoformat(),
                "close_time": (opened + timedelta(minutes=10)).isoformat(),
            },
        )
    calls = []
    original = MT5WebAPIGateway._call

    def counting(self, method, path, **kwargs):
        calls.append((path, kwargs.get("params")))
        return original(self, method, path, **kwargs)

    monkeypatch.setattr(MT5WebAPIGateway, "_call", counting)
    deals = list(gateway.iter_deals([account.login], now - timedelta(hours=6), now))
    windows = [params for path, params in calls if path == "/api/deal/get_batch"]
    assert len(windows) == 6
    assert all(w2["from"] == w1["to"] + 1 for w1, w2 in zip(windows, windows[1:], strict=False))
    trade_deals = [d for d in deals if d.symbol == "GBPUSD"]
    assert len(trade_deals) == 6 and len({d.ticket for d in deals}) == len(deals)
    assert [d.time for d in deals] == sorted(d.time for d in deals)
    assert all(d.profit == Decimal("10.00") for d in trade_deals if d.entry == "out")


@pytest.mark.parametrize("timezone", [120, "120", "+02:00", "UTC+2", "Etc/GMT-2", None])
def test_server_times_are_converted_to_utc_whatever_the_timezone_spelling(sim, timezone):
    gateway = make_gateway(sim, timezone=timezone)  # None: asks the server (/api/time/get)
    assert abs(gateway.server_time() - sim_clock(sim)) < timedelta(seconds=5)


def test_a_wrong_timezone_shows_as_an_offset(sim):
    assert abs(make_gateway(sim, timezone=0).server_time() - sim_clock(sim) - timedelta(hours=2)) < timedelta(seconds=5)


def test_server_clock_follows_dst_with_a_zone_name():
    clock = ServerClock("Europe/Nicosia")
    summer, winter = datetime(2025, 7, 1, 12, tzinfo=UTC), datetime(2025, 1, 15, 12, tzinfo=UTC)
    assert clock.to_server(summer) - int(summer.timestamp()) == 3 * 3600
    assert clock.to_server(winter) - int(winter.timestamp()) == 2 * 3600
    assert clock.to_utc(clock.to_server(summer)) == summer


def test_a_server_on_daylight_saving_time_round_trips_summer_and_winter_times(sim):
    dst_server = {**simulated_servers()[0], "key": "mt5-cyprus", "timezone": "Europe/Nicosia"}
    sim.control("POST", "/sim/servers", {**dst_server, "login_start": 6000000, "login_end": 6000999})
    gateway = make_gateway(sim, server="mt5-cyprus", timezone="Europe/Nicosia", window_seconds=30 * 86400)
    account = funded_account(gateway)
    summer, winter = datetime(2025, 7, 1, 9, 30, tzinfo=UTC), datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
    for moment in (summer, winter):
        sim.control(
            "POST",
            "/sim/trades",
            {
                "login": account.login,
                "symbol": "EURUSD",
                "side": "BUY",
                "volume": "0.1",
                "open_price": "1.1",
                "close_price": "1.1",
                "open_time": (moment - timedelta(hours=1)).isoformat(),
                "close_time": moment.isoformat(),
            },
        )
    start, end = datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 8, 1, tzinfo=UTC)
    exits = [d.time for d in gateway.iter_deals([account.login], start, end) if d.entry == "out"]
    assert exits == [winter, summer]
    fixed_offset = make_gateway(sim, server="mt5-cyprus", timezone=120, window_seconds=30 * 86400)
    misread = [d.time for d in fixed_offset.iter_deals([account.login], start, end) if d.entry == "out"]
    assert misread == [winter, summer + timedelta(hours=1)]  # what ignoring DST would cost


# Faults -----------------------------------------------------------------------------------------------------


def test_server_errors_are_transient_and_change_nothing(sim, gateway):
    account = funded_account(gateway)
    sim.faults(error_rate=1)
    with pytest.raises(gw.TransientError):
        gateway.trade_state(account.login)
    with pytest.raises(gw.TransientError):
        gateway.balance_operation(account.login, Decimal("10.00"), "DEPOSIT#t1")
    sim.faults()
    assert gateway.trade_state(account.login).balance == Decimal("1000.00")
    assert gateway.find_balance_operation(account.login, "DEPOSIT#t1", datetime.now(UTC) - timedelta(hours=1)) is None


def test_lost_answer_on_a_balance_operation_is_ambiguous_and_the_operation_was_applied(sim, gateway):
    account = funded_account(gateway)
    since = datetime.now(UTC)
    sim.faults(lost_answer_rate=1, paths=["trade/balance"])
    with pytest.raises(gw.AmbiguousError):
        gateway.balance_operation(account.login, Decimal("-40.00"), "WITHDRAWAL#lost1")
    sim.faults()
    found = gateway.find_balance_operation(account.login, "WITHDRAWAL#lost1", since)
    assert found is not None and found.profit == Decimal("-40.00")
    assert gateway.trade_state(account.login).balance == Decimal("960.00")


def test_lost_answer_on_a_read_is_retried_once_then_transient(sim, gateway):
    account = new_account(gateway)
    sim.faults(lost_answer_rate=1, paths=["user/get"])
    with pytest.raises(gw.TransientError):
        gateway.get_account(account.login)


def test_latency_beyond_the_timeout(sim):
    gateway = make_gateway(sim, timeout=0.5)
    account = funded_account(gateway)
    since = datetime.now(UTC)
    sim.faults(latency_ms=1500, paths=["user/account/get", "trade/balance"])
    with pytest.raises(gw.TransientError):
        gateway.trade_state(account.login)  # a read that timed out: safe to retry
    with pytest.raises(gw.AmbiguousError):
        gateway.balance_operation(account.login, Decimal("15.00"), "DEPOSIT#slow1")
    time.sleep(1.5)  # the slow server still applies it after we gave up
    sim.faults()
    assert gateway.find_balance_operation(account.login, "DEPOSIT#slow1", since) is not None


def test_nobody_listening_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = MT5WebAPIGateway(f"http://127.0.0.1:{port}/mt5", 1000, "x", timezone=0, timeout=1)
    with pytest.raises(gw.TransientError):
        gateway.server_time()
    with pytest.raises(gw.TransientError):
        gateway.balance_operation(1, Decimal("1"), "DEPOSIT#x")


def test_a_restarted_simulator_keeps_its_book_and_its_ticket_sequence(tmp_path):
    with start_simulator(tmp_path) as running:
        gateway = make_gateway(running)
        account = funded_account(gateway, "321.09")
        before = gateway.balance_operation(account.login, Decimal("1.00"), "DEPOSIT#before")
        running.restart()
        after = gateway.balance_operation(account.login, Decimal("1.00"), "DEPOSIT#after")
        assert after > before
        assert gateway.trade_state(account.login).balance == Decimal("323.09")
        assert gateway.get_account(account.login).name == "Ann Lee"


def test_gateway_satisfies_the_protocol_and_hides_the_password(sim, gateway):
    assert isinstance(gateway, MT5WebAPIGateway)
    for name in gw.TradingGateway.__dict__:
        if not name.startswith("_"):
            assert callable(getattr(gateway, name)), name
    assert sim.manager_password not in repr(gateway)


def test_http_403_on_the_second_try_is_permission_denied(sim, gateway, monkeypatch):
    gateway.server_time()

    def always_forbidden(self, session, method, path, **kwargs):
        response = requests.Response()
        response.status_code = 403
        return response

    monkeypatch.setattr(MT5WebAPIGateway, "_send", always_forbidden)
    monkeypatch.setattr(MT5WebAPIGateway, "_login", lambda self, session: None)
    with pytest.raises(gw.PermissionDenied):
        gateway.server_time()


def test_factory_builds_a_gateway_from_the_connector_name(sim):
    gateway = gateway_for_connector(
        "mt5_webapi",
        base_url=sim.server_url("mt4-live"),
        manager_login=sim.manager_login,
        manager_password=sim.manager_password,
        timezone="Etc/GMT-2",
        timeout=5,
    )
    assert abs(gateway.server_time() - sim_clock(sim)) < timedelta(seconds=5)
    with pytest.raises(ValueError, match="unknown trading connector"):
        gateway_for_connector("fix_bridge")


def test_an_answer_without_a_retcode_is_transient_for_reads_and_ambiguous_for_writes(sim, gateway, monkeypatch):
    gateway.server_time()

    def garbled(self, session, method, path, **kwargs):
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"answer": {}}'
        return response

    monkeypatch.setattr(MT5WebAPIGateway, "_send", garbled)
    with pytest.raises(gw.TransientError):
        gateway.get_account(1)
    with pytest.raises(gw.AmbiguousError):
        gateway.balance_operation(1, 1.10, "DEPOSIT#g1")


# Sessions lost: HTTP 403 or retcode 8 (#13) ---------------------------------------------------

EXPIRY_ANSWERS = ["403", "retcode8"]


@pytest.fixture
def expiry(sim, request):
    sim.sessions(session_expired_answer=request.param)
    yield request.param
    sim.sessions(session_expired_answer="403", refuse_group_reads=False)


@pytest.mark.parametrize("expiry", EXPIRY_ANSWERS, indirect=True)
def test_reads_and_writes_continue_after_the_server_drops_the_session(sim, gateway, expiry, monkeypatch):
    """Whatever the peer answers a dead session with, one new handshake and the call goes through."""
    account = funded_account(gateway, "100.00")
    logins = count_logins(monkeypatch)
    sim.drop_sessions()
    assert gateway.get_account(account.login).login == account.login
    sim.drop_sessions()
    gateway.update_account(account.login, leverage=50)
    assert gateway.get_account(account.login).leverage == 50
    assert len(logins) == 2


@pytest.mark.parametrize("expiry", EXPIRY_ANSWERS, indirect=True)
def test_a_session_dropped_between_two_balance_operations_applies_each_exactly_once(sim, gateway, expiry):
    account = new_account(gateway)
    first = gateway.balance_operation(account.login, Decimal("100.00"), "dep-1")
    sim.drop_sessions()
    second = gateway.balance_operation(account.login, Decimal("-40.00"), "wd-2")
    assert first != second
    assert gateway.trade_state(account.login).balance == Decimal("60.00")
    since = datetime.now(UTC) - timedelta(days=1)
    assert gateway.find_balance_operation(account.login, "dep-1", since).ticket == first
    assert gateway.find_balance_operation(account.login, "wd-2", since).ticket == second


@pytest.mark.parametrize("expiry", EXPIRY_ANSWERS, indirect=True)
def test_a_wrong_manager_password_after_a_drop_is_reported_as_such(sim, expiry):
    gateway = make_gateway(sim)
    gateway.server_time()
    sim.drop_sessions()
    wrong = make_gateway(sim, manager_password="Not-The-Password1")
    with pytest.raises(gw.ManagerLoginFailed) as caught:
        wrong.server_time()
    assert "manager password" in str(caught.value)
    assert caught.value.retcode == 1001


def test_an_unreachable_server_during_the_handshake_is_transient_and_says_so():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = MT5WebAPIGateway(f"http://127.0.0.1:{port}/x", 1000, "Whatever-1", timezone=0, timeout=1.0)
    with pytest.raises(gw.TransientError) as caught:
        gateway.server_time()
    assert "unreachable" in str(caught.value)


def test_a_retcode_8_right_after_a_fresh_login_is_a_refusal_not_a_loop(sim, gateway, monkeypatch):
    sim.sessions(refuse_group_reads=True)
    try:
        logins = count_logins(monkeypatch)
        with pytest.raises(gw.PermissionDenied):
            gateway._call("GET", "/api/group/get", params={"group": USD_GROUP})
        assert len(logins) == 1
    finally:
        sim.sessions(refuse_group_reads=False)


def test_figures_without_group_rights_leave_the_currency_to_the_caller_and_ask_once_per_group(
    sim, gateway, monkeypatch
):
    account = funded_account(gateway, "25.00")
    sim.sessions(refuse_group_reads=True)
    try:
        forget_pinned_sessions()
        state = gateway.trade_state(account.login)
        assert state.balance == Decimal("25.00")
        assert state.currency == ""  # unknown here: the caller uses the account type's currency
        asked = []
        real_send = MT5WebAPIGateway._send

        def counting(self, session, method, path, **kwargs):
            asked.append(path)
            return real_send(self, session, method, path, **kwargs)

        monkeypatch.setattr(MT5WebAPIGateway, "_send", counting)
        other = new_account(gateway)
        gateway.trade_state(other.login)
        assert "/api/group/get" not in asked
    finally:
        sim.sessions(refuse_group_reads=False)


@pytest.mark.parametrize("status", [404, 501])
def test_figures_from_a_peer_without_group_get_leave_the_currency_to_the_caller(sim, gateway, monkeypatch, status):
    account = funded_account(gateway, "10.00")
    forget_pinned_sessions()
    real_send = MT5WebAPIGateway._send

    def no_group_get(self, session, method, path, **kwargs):
        if path == "/api/group/get":
            response = requests.Response()
            response.status_code = status
            return response
        return real_send(self, session, method, path, **kwargs)

    monkeypatch.setattr(MT5WebAPIGateway, "_send", no_group_get)
    state = gateway.trade_state(account.login)
    assert (state.balance, state.currency) == (Decimal("10.00"), "")
