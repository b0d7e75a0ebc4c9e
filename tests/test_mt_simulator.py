"""The MT simulator on the wire, with plain HTTP: the handshake, MT's rules and formats, the
control routes, market activity, and what several simulator processes share."""

import hashlib
import json
import secrets
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from click.testing import CliRunner
from werkzeug.serving import make_server

from crm_app.integrations.trading.simulator import create_simulator_app
from crm_app.integrations.trading.simulator.cli import mt_sim_command
from crm_app.integrations.trading.simulator.rules import password_problem
from tests.support.mt_sim import MANAGER_LOGIN, MANAGER_PASSWORD, simulated_servers, start_simulator


def md5(data):
    return hashlib.md5(data, usedforsecurity=False).digest()


def proof(password, random_hex):
    """Written out here from the Web API docs, not imported: the check must be independent."""
    password_hash = md5(md5(password.encode("utf-16-le")) + b"WebAPI")
    return hashlib.md5(password_hash + bytes.fromhex(random_hex), usedforsecurity=False).hexdigest()


class WireClient:
    """A manager connection to one simulated server, speaking the wire format by hand."""

    def __init__(self, sim, server="mt5-demo", password=MANAGER_PASSWORD):
        self.url = sim.server_url(server)
        self.password = password
        self.http = requests.Session()

    def login(self):
        start = self.http.get(
            f"{self.url}/api/auth/start",
            params={"version": 4330, "agent": "tests", "login": MANAGER_LOGIN, "type": "manager"},
            timeout=5,
        ).json()
        assert start["retcode"] == "0 Done" and len(bytes.fromhex(start["srv_rand"])) == 16
        cli_rand = secrets.token_hex(16)
        answer = self.http.get(
            f"{self.url}/api/auth/answer",
            params={"srv_rand_answer": proof(self.password, start["srv_rand"]), "cli_rand": cli_rand},
            timeout=5,
        ).json()
        return answer, cli_rand

    def get(self, path, **params):
        return self.http.get(f"{self.url}{path}", params=params, timeout=10)

    def post(self, path, body=None, **params):
        return self.http.post(f"{self.url}{path}", params=params, json=body, timeout=10)

    def add_user(self, group="demo\\standard-usd", **fields):
        body = {
            "Group": group,
            "Name": "Wire Test",
            "Leverage": "100",
            "PassMain": "Main1234x",
            "PassInvestor": "Inv1234xy",
        }
        body.update(fields)
        return self.post("/api/user/add", body).json()

    def deposit(self, login, amount, comment="DEPOSIT#wire", **params):
        query = {"login": login, "type": 2, "balance": amount, "comment": comment, **params}
        return self.post("/api/trade/balance", **query).json()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with start_simulator(tmp_path_factory.mktemp("mt-sim-wire")) as running:
        yield running


@pytest.fixture
def client(sim):
    sim.faults()
    wire = WireClient(sim)
    answer, _ = wire.login()
    assert answer["retcode"] == "0 Done"
    return wire


# The handshake ----------------------------------------------------------------------------------


def test_handshake_proves_the_password_both_ways(sim):
    wire = WireClient(sim)
    answer, cli_rand = wire.login()
    assert answer["retcode"] == "0 Done"
    assert answer["cli_rand_answer"] == proof(MANAGER_PASSWORD, cli_rand)  # the server knows it too
    assert wire.get("/api/test/access").json() == {"retcode": "0 Done"}


def test_wrong_password_gets_1001_and_no_session(sim):
    wire = WireClient(sim, password="Wrong-Password1")
    answer, _ = wire.login()
    assert answer == {"retcode": "1001 Invalid account"}
    assert wire.get("/api/time/server").status_code == 403


def test_calls_without_a_session_are_403(sim):
    response = requests.get(sim.server_url("mt5-demo") + "/api/user/get", params={"login": 1}, timeout=5)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"version": 100, "agent": "tests", "login": MANAGER_LOGIN, "type": "manager"}, "1010 Client has old version"),
        ({"version": 4330, "agent": "two words", "login": MANAGER_LOGIN, "type": "manager"}, "3 Invalid parameters"),
        ({"version": 4330, "agent": "tests", "login": MANAGER_LOGIN, "type": "client"}, "1000 Invalid terminal type"),
        ({"version": 4330, "agent": "tests", "login": 4242, "type": "manager"}, "1001 Invalid account"),
    ],
)
def test_auth_start_checks_its_parameters(sim, params, expected):
    answer = requests.get(sim.server_url("mt5-demo") + "/api/auth/start", params=params, timeout=5).json()
    assert answer["retcode"] == expected


def test_auth_answer_without_a_started_authentication_is_refused(sim):
    answer = requests.get(
        sim.server_url("mt5-demo") + "/api/auth/answer",
        params={"srv_rand_answer": "0" * 32, "cli_rand": "1" * 32},
        timeout=5,
    ).json()
    assert answer["retcode"] == "1001 Invalid account"


def test_quit_ends_the_session(client):
    assert client.get("/api/quit").json()["retcode"] == "0 Done"
    assert client.get("/api/test/access").status_code == 403


def test_unknown_server_and_unknown_command(sim, client):
    assert requests.get(f"{sim.base_url}/nope/api/time/server", timeout=5).status_code == 404
    assert client.get("/api/no/such/command").status_code == 404


# Formats and MT rules -----------------------------------------------------------------------------


def test_every_number_arrives_as_a_string(client):
    user = client.add_user(Email="w@example.test", Comment="x" * 80)["answer"]
    assert all(isinstance(value, str) for value in user.values())
    assert len(user["Comment"]) == 63  # 64 with the terminator: MT cuts the rest
    account = client.get("/api/user/account/get", login=user["Login"]).json()["answer"]
    assert all(isinstance(value, str) for value in account.values())
    assert account["Balance"] == "0.00" and account["MarginLevel"] == "0"


def test_passwords_may_come_in_the_query_string_too(client):
    answer = client.post(
        "/api/user/add",
        {"Group": "demo\\standard-usd", "Name": "Query Pass", "Leverage": "50"},
        pass_main="Query1234",
        pass_investor="Query5678",
    ).json()
    assert answer["retcode"] == "0 Done"
    login = answer["answer"]["Login"]
    assert client.get("/api/user/check_password", login=login, type="main", password="Query1234").json() == {
        "retcode": "0 Done"
    }
    wrong = client.post("/api/user/check_password", {"Login": login, "Type": "main", "Password": "nope"}).json()
    assert wrong == {"retcode": "3006 Invalid account password"}


def test_balance_answer_carries_the_ticket_and_comments_are_cut_to_31(client):
    login = client.add_user()["answer"]["Login"]
    first = client.deposit(login, "10.00", comment="C" * 40)
    second = client.deposit(login, "10.00")
    assert first["retcode"] == "0 Done" and int(second["answer"]["Ticket"]) > int(first["answer"]["Ticket"])
    now = int(datetime.now(UTC).timestamp()) + 7200
    deals = client.get("/api/deal/get_batch", login=login, **{"from": now - 3600, "to": now + 3600}).json()["answer"]
    assert [d["Comment"] for d in deals] == ["C" * 31, "DEPOSIT#wire"]
    assert deals[0]["Action"] == "2" and deals[0]["Profit"] == "10.00"


@pytest.mark.parametrize(
    ("amount", "check_margin", "expected"),
    [
        ("-150.00", None, "10019 Not enough money"),  # more than the balance
        ("-60.00", None, "10019 Not enough money"),  # more than the free margin
        ("-60.00", 0, "0 Done"),  # check_margin=0: only the balance limits it
        ("1000000001", None, "4005 Money limit reached"),
        ("0", None, "3 Invalid parameters"),
    ],
)
def test_balance_operation_limits(sim, client, amount, check_margin, expected):
    login = client.add_user()["answer"]["Login"]
    client.deposit(login, "100.00")
    sim.control("POST", "/sim/trades", {"login": login, "symbol": "EURUSD", "side": "BUY", "volume": "0.05"})
    extra = {} if check_margin is None else {"check_margin": check_margin}
    assert client.deposit(login, amount, **extra)["retcode"] == expected


def test_batch_requests_need_logins_groups_or_tickets_and_groups_take_masks(client):
    assert client.get("/api/position/get_batch").json()["retcode"] == "3 Invalid parameters"
    standard = client.add_user()["answer"]["Login"]
    pro = client.add_user(group="demo\\pro-usd")["answer"]["Login"]
    logins = client.get("/api/user/logins", group="demo*,!demo\\pro-usd").json()["answer"]
    assert standard in logins and pro not in logins


def test_password_rules():
    assert password_problem("Abcdefg1") is None
    assert password_problem("abcdefg1") is None  # two character types are enough by default
    assert password_problem("abcdefgh")  # one type
    assert password_problem("Abcdefg1", policy="strict")  # strict: a special character too
    assert password_problem("Abcdef1!", policy="strict") is None
    assert password_problem("Ab1", platform="MT4") and password_problem("abcde1", platform="MT4") is None
    assert password_problem("Abcdefgh1", min_length=10)  # the group may ask for more


# Control routes -------------------------------------------------------------------------------------


def test_sim_trades_compute_profit_with_the_contract_size(sim, client):
    login = client.add_user()["answer"]["Login"]
    gold = sim.control(
        "POST",
        "/sim/trades",
        {
            "login": login,
            "symbol": "XAUUSD",
            "side": "SELL",
            "volume": "0.5",
            "open_price": "2350.00",
            "close_price": "2340.00",
        },
    )
    assert gold["profit"] == "500.00"  # 10 USD x 100 oz x 0.5 lot
    sim.control("POST", "/sim/prices", {"symbol": "USDJPY", "bid": "149.994", "ask": "150.006"})
    yen = sim.control(
        "POST",
        "/sim/trades",
        {
            "login": login,
            "symbol": "USDJPY",
            "side": "BUY",
            "volume": "1",
            "open_price": "150.000",
            "close_price": "151.500",
        },
    )
    assert yen["profit"] == "1000.00"  # 150,000 JPY at the market's 150.000 JPY per USD


def test_sim_trade_defaults_a_closed_trade_to_an_hour_ago_until_now(sim, client):
    login = int(client.add_user()["answer"]["Login"])
    trade = sim.control(
        "POST",
        "/sim/trades",
        {"login": login, "symbol": "EURUSD", "side": "BUY", "volume": "1", "close_price": "1.09000"},
    )
    now = int(datetime.fromisoformat(sim.control("GET", "/sim/clock")["now"]).timestamp()) + 7200
    deals = client.get("/api/deal/get_batch", ticket=",".join(map(str, trade["deals"]))).json()["answer"]
    opened, closed = (int(d["Time"]) for d in deals)
    assert abs(closed - now) <= 5 and closed - opened == 3600


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"login": 1, "symbol": "EURUSD", "side": "BUY", "volume": "1"}, 404),
        ({"symbol": "EURUSD", "side": "BUY", "volume": "1"}, 400),
        ({"login": None, "symbol": "NOPE", "side": "BUY", "volume": "1"}, 400),
        ({"login": None, "symbol": "EURUSD", "side": "UP", "volume": "1"}, 400),
        ({"login": None, "symbol": "EURUSD", "side": "BUY", "volume": "0.000000001"}, 400),
    ],
)
def test_sim_trades_refuse_bad_requests(sim, client, body, status):
    if "login" in body and body["login"] is None:
        body["login"] = client.add_user()["answer"]["Login"]
    response = requests.post(f"{sim.base_url}/sim/trades", json=body, timeout=5)
    assert response.status_code == status, response.text


def test_pending_orders_follow_mt_placement_rules(sim, client):
    login = client.add_user()["answer"]["Login"]
    quote = sim.control("POST", "/sim/prices", {"symbol": "EURUSD", "bid": "1.10000"})
    wrong_side = requests.post(
        f"{sim.base_url}/sim/pending-orders",
        json={"login": login, "symbol": "EURUSD", "type": "BUY_LIMIT", "volume": "1", "price": "1.20000"},
        timeout=5,
    )
    assert wrong_side.status_code == 400 and wrong_side.json()["retcode"] == "10015 Invalid price"
    placed = sim.control(
        "POST",
        "/sim/pending-orders",
        {"login": login, "symbol": "EURUSD", "type": "BUY_STOP", "volume": "1", "price": "1.11000", "sl": "1.10500"},
    )
    [order] = client.get("/api/order/get_batch", login=login).json()["answer"]
    assert (order["Order"], order["Type"], order["State"]) == (str(placed["order"]), "4", "1")
    assert (order["PriceOrder"], order["PriceSL"], order["VolumeCurrent"]) == ("1.11000", "1.10500", "10000")
    assert quote["ask"] == "1.10010"


def test_faults_validate_and_filter_by_path(sim, client):
    assert requests.post(f"{sim.base_url}/sim/faults", json={"error_rate": 2}, timeout=5).status_code == 400
    sim.faults(error_rate=1, paths=["user/get"])
    login = client.add_user()["answer"]["Login"]  # other paths unaffected
    assert client.get("/api/user/get", login=login).json()["retcode"] in (
        "11 Service is not available",
        "12 Too frequent requests",
    )
    sim.faults()
    assert client.get("/api/user/get", login=login).json()["retcode"] == "0 Done"


def test_lost_answer_drops_the_connection_after_applying(sim, client):
    login = client.add_user()["answer"]["Login"]
    sim.faults(lost_answer_rate=1, paths=["trade/balance"])
    with pytest.raises(requests.ConnectionError):
        client.deposit(login, "12.00")
    sim.faults()
    assert client.get("/api/user/get", login=login).json()["answer"]["Balance"] == "12.00"


def test_the_clock_moves_only_forward(sim):
    before = datetime.fromisoformat(sim.control("GET", "/sim/clock")["now"])
    after = datetime.fromisoformat(sim.control("POST", "/sim/clock", {"advance_minutes": 30})["now"])
    assert timedelta(minutes=30) <= after - before < timedelta(minutes=31)
    assert requests.post(f"{sim.base_url}/sim/clock", json={"advance_minutes": -1}, timeout=5).status_code == 400


def test_servers_are_listed_and_can_be_added_at_run_time(sim):
    keys = {s["key"]: s for s in sim.control("GET", "/sim/servers")["servers"]}
    assert {"mt5-demo", "mt5-live", "mt4-live"} <= set(keys)
    assert keys["mt4-live"]["platform"] == "MT4" and "manager_password" not in keys["mt4-live"]
    definition = {**simulated_servers()[0], "key": "mt5-extra", "login_start": 8000000, "login_end": 8000099}
    sim.control("POST", "/sim/servers", definition)
    wire = WireClient(sim, server="mt5-extra")
    wire.login()
    assert wire.add_user()["answer"]["Login"] == "8000000"


# Several processes, restarts, concurrency ---------------------------------------------------------------


def test_concurrent_withdrawals_never_take_more_than_the_balance(sim, client):
    login = client.add_user()["answer"]["Login"]
    client.deposit(login, "100.00")
    managers = []
    for _ in range(8):
        wire = WireClient(sim)
        wire.login()
        managers.append(wire)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda wire: wire.deposit(login, "-30.00", comment="WD")["retcode"], managers))
    assert results.count("0 Done") == 3
    assert results.count("10019 Not enough money") == 5
    assert client.get("/api/user/get", login=login).json()["answer"]["Balance"] == "10.00"


def test_two_simulator_processes_share_one_book_and_its_sessions(sim, tmp_path):
    other_app = create_simulator_app(sim.database_url, servers=simulated_servers())
    other = make_server("127.0.0.1", 0, other_app, threaded=True)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        wire = WireClient(sim)
        wire.login()
        login = wire.add_user()["answer"]["Login"]
        # The same session cookie, sent to the other process.
        url = f"http://127.0.0.1:{other.server_port}/mt5-demo/api/user/get"
        answer = requests.get(url, params={"login": login}, cookies=wire.http.cookies, timeout=5).json()
        assert answer["answer"]["Login"] == login
    finally:
        other.shutdown()
        other.server_close()


def test_servers_from_a_json_file(tmp_path):
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"servers": [{**simulated_servers()[2], "key": "mt4-file"}]}), encoding="utf-8")
    app = create_simulator_app(f"sqlite:///{tmp_path}/file.db", config_path=str(config))
    listed = app.test_client().get("/sim/servers").get_json()["servers"]
    assert [s["key"] for s in listed] == ["mt4-file"]


def test_default_servers_when_the_database_is_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("MT_SIM_CONFIG", raising=False)
    app = create_simulator_app(f"sqlite:///{tmp_path}/defaults.db")
    listed = {s["key"]: s for s in app.test_client().get("/sim/servers").get_json()["servers"]}
    assert set(listed) == {"mt5-live", "mt5-demo", "mt4-live", "mt4-demo"}
    assert {g["name"] for g in listed["mt5-demo"]["groups"]} == {"demo\\standard-usd", "demo\\pro-usd"}


def test_cli_command_documents_its_options():
    result = CliRunner().invoke(mt_sim_command, ["--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "--database-url" in result.output


# Market activity ----------------------------------------------------------------------------------------


def test_activity_trades_in_simulated_time_and_the_books_balance(tmp_path):
    with start_simulator(tmp_path) as running:
        wire = WireClient(running)
        wire.login()
        logins = []
        for index in range(6):
            login = wire.add_user(group="demo\\pro-usd" if index % 2 else "demo\\standard-usd")["answer"]["Login"]
            wire.deposit(login, "10000.00")
            logins.append(login)
        clock_before = datetime.fromisoformat(running.control("GET", "/sim/clock")["now"])
        summary = running.control("POST", "/sim/activity", {"minutes": 720, "seed": 11})
        clock_after = datetime.fromisoformat(running.control("GET", "/sim/clock")["now"])

        assert clock_after - clock_before >= timedelta(minutes=720)
        if datetime.fromisoformat(summary["from"]).weekday() < 5:
            assert summary["positions_opened"] + summary["pending_filled"] > 10
            assert summary["positions_closed"] + summary["sl_hits"] + summary["tp_hits"] > 5
            assert summary["pending_placed"] > 0

        start = int(clock_before.timestamp()) + 7200 - 3600
        end = int(clock_after.timestamp()) + 7200 + 60
        deals = wire.get("/api/deal/get_batch", login=",".join(logins), **{"from": start, "to": end}).json()["answer"]
        tickets = [int(d["Deal"]) for d in deals]
        assert sorted(tickets) == tickets  # ordered by time, and tickets grew with time
        pros = {login for index, login in enumerate(logins) if index % 2}
        assert all(Decimal(d["Commission"]) < 0 for d in deals if d["Login"] in pros and d["Action"] in ("0", "1"))

        # Every cent of every balance is explained by the account's deals.
        effect = defaultdict(Decimal)
        for deal in deals:
            effect[deal["Login"]] += Decimal(deal["Profit"]) + Decimal(deal["Commission"]) + Decimal(deal["Storage"])
        for login in logins:
            user = wire.get("/api/user/get", login=login).json()["answer"]
            assert Decimal(user["Balance"]) == effect[login], login
            state = wire.get("/api/user/account/get", login=login).json()["answer"]
            floating = Decimal(state["Profit"]) + Decimal(state["Storage"])
            assert Decimal(state["Equity"]) == Decimal(state["Balance"]) + floating


def test_activity_books_swaps_when_crossing_server_midnight_on_a_weekday(tmp_path):
    with start_simulator(tmp_path) as running:
        wire = WireClient(running)
        wire.login()
        login = wire.add_user()["answer"]["Login"]
        wire.deposit(login, "50000.00")
        position = running.control(
            "POST", "/sim/trades", {"login": login, "symbol": "EURUSD", "side": "BUY", "volume": "1"}
        )["position"]
        now = datetime.fromisoformat(running.control("GET", "/sim/clock")["now"])
        server_now = now + timedelta(hours=2)
        to_midnight = (24 * 60) - (server_now.hour * 60 + server_now.minute) - 2
        running.control("POST", "/sim/clock", {"advance_minutes": max(to_midnight, 0)})
        running.control("POST", "/sim/prices", {"symbol": "EURUSD", "bid": "1.08500"})
        ended_day = datetime.fromisoformat(running.control("GET", "/sim/clock")["now"]) + timedelta(hours=2)
        summary = running.control(
            "POST", "/sim/activity", {"minutes": 5, "logins": [login], "seed": 3, "traders_act": False}
        )
        [record] = wire.get("/api/position/get_batch", ticket=position).json()["answer"]
        if ended_day.weekday() >= 5:
            assert record["Storage"] == "0.00" and summary["swap_charges"] == 0
        else:
            nights = 3 if ended_day.weekday() == 2 else 1
            assert Decimal(record["Storage"]) == Decimal("-6.50") * nights
            assert summary["swap_charges"] == 1


# Session expiry answers and group rights (#13) -------------------------------------------------


def test_session_settings_default_to_403_an_idle_timeout_of_180_s_and_readable_groups(tmp_path, monkeypatch):
    for name in ("MT_SIM_CONFIG", "MT_SIM_SESSION_IDLE_SECONDS", "MT_SIM_SESSION_EXPIRED_ANSWER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MT_SIM_REFUSE_GROUP_READS", raising=False)
    app = create_simulator_app(f"sqlite:///{tmp_path}/defaults.db")
    assert app.extensions["mt_sim"].session_idle_seconds == 180
    assert app.test_client().get("/sim/sessions").get_json() == {
        "session_expired_answer": "403",
        "refuse_group_reads": False,
    }


def test_session_settings_from_the_environment_and_the_config_file(tmp_path, monkeypatch):
    config = tmp_path / "servers.json"
    config.write_text(
        json.dumps(
            {"servers": simulated_servers()[:1], "session_expired_answer": "retcode8", "refuse_group_reads": True}
        ),
        encoding="utf-8",
    )
    for name in ("MT_SIM_SESSION_EXPIRED_ANSWER", "MT_SIM_REFUSE_GROUP_READS"):
        monkeypatch.delenv(name, raising=False)
    app = create_simulator_app(f"sqlite:///{tmp_path}/file.db", config_path=str(config))
    assert app.test_client().get("/sim/sessions").get_json() == {
        "session_expired_answer": "retcode8",
        "refuse_group_reads": True,
    }
    monkeypatch.setenv("MT_SIM_SESSION_EXPIRED_ANSWER", "403")
    monkeypatch.setenv("MT_SIM_SESSION_IDLE_SECONDS", "42")
    app = create_simulator_app(f"sqlite:///{tmp_path}/env.db", config_path=str(config))
    assert app.test_client().get("/sim/sessions").get_json()["session_expired_answer"] == "403"
    assert app.extensions["mt_sim"].session_idle_seconds == 42
    monkeypatch.setenv("MT_SIM_SESSION_EXPIRED_ANSWER", "teapot")
    with pytest.raises(ValueError, match="session_expired_answer"):
        create_simulator_app(f"sqlite:///{tmp_path}/bad.db", config_path=str(config))


@pytest.mark.parametrize(("answer", "status"), [("403", 403), ("retcode8", 200)])
def test_a_dropped_session_gets_the_configured_answer(sim, client, answer, status):
    sim.sessions(session_expired_answer=answer)
    try:
        assert client.get("/api/time/server").status_code == 200
        assert sim.drop_sessions()["dropped"] >= 1
        response = client.get("/api/time/server")
    finally:
        sim.sessions(session_expired_answer="403")
    assert response.status_code == status
    assert response.json() == {"retcode": "8 Not enough permissions"}


def test_group_reads_can_be_refused_like_a_manager_without_the_right(sim, client):
    sim.sessions(refuse_group_reads=True)
    try:
        refused = client.get("/api/group/get", group="demo\\standard-usd")
    finally:
        sim.sessions(refuse_group_reads=False)
    assert (refused.status_code, refused.json()) == (200, {"retcode": "8 Not enough permissions"})
    assert client.get("/api/group/get", group="demo\\standard-usd").json()["retcode"] == "0 Done"


def test_an_unknown_session_answer_is_refused_by_the_control_route(sim):
    response = requests.post(sim.base_url + "/sim/sessions", json={"session_expired_answer": "418"}, timeout=5)
    assert response.status_code == 400
