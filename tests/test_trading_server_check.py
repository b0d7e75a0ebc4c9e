"""`POST /api/v1/admin/trading-servers/{id}/check`: a broker wires a server without reading logs."""

import socket
import time

import pytest

from crm_app.integrations.trading.gateway import NewAccount
from crm_app.integrations.trading.mt5_webapi import MT5WebAPIGateway
from tests.support.trading import GOOD_INVESTOR, GOOD_PASSWORD, book_counter

STEPS = ["handshake", "server_time", "user_read", "login_range"]


@pytest.fixture
def admin(factory, client):
    return factory.headers(client, factory.admin())


def add_server(client, headers, sim, **overrides):
    first = 5900000 + book_counter.next()
    body = {
        "name": f"Check {first}",
        "platform": "MT5",
        "is_demo": True,
        "base_url": sim.server_url("mt5-demo"),
        "manager_login": sim.manager_login,
        "manager_password": sim.manager_password,
        # The simulator's servers keep UTC+02:00 all year.
        "timezone": "Etc/GMT-2",
        "next_login": first,
        "last_login": first + 99,
        **overrides,
    }
    response = client.post("/api/v1/admin/trading-servers", headers=headers, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def check(client, headers, server_id, **body):
    return client.post(f"/api/v1/admin/trading-servers/{server_id}/check", headers=headers, json=body)


def steps_of(answer):
    return {step["step"]: step for step in answer["steps"]}


def test_a_healthy_server_passes_every_step(client, admin, sim):
    server = add_server(client, admin, sim)
    response = check(client, admin, server["id"])
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert [step["step"] for step in answer["steps"]] == STEPS
    assert answer["ok"] is True, answer
    for step in answer["steps"]:
        assert step["ok"] is True and step["skipped"] is False
        assert step["detail"] and step["elapsed_ms"] >= 0
    steps = steps_of(answer)
    assert "UTC+02:00" in steps["server_time"]["detail"]
    assert "not found" in steps["user_read"]["detail"]  # the manager is no user on the simulator
    probes = steps["login_range"]["logins"]
    assert [p["login"] for p in probes] == [
        *range(server["next_login"], server["next_login"] + 5),
        server["last_login"],
    ]
    assert {p["state"] for p in probes} == {"free"}
    assert sim.manager_password not in response.get_data(as_text=True)


def test_a_wrong_configured_zone_is_reported(client, admin, sim):
    server = add_server(client, admin, sim, timezone="Etc/GMT-3")
    answer = check(client, admin, server["id"]).get_json()
    assert answer["ok"] is False
    time_step = steps_of(answer)["server_time"]
    assert time_step["ok"] is False and "differ" in time_step["detail"]
    assert steps_of(answer)["handshake"]["ok"] is True


def test_a_wrong_manager_password_fails_the_handshake_and_skips_the_rest(client, admin, sim):
    server = add_server(client, admin, sim, manager_password="Not-The-Password1")
    response = check(client, admin, server["id"])
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["ok"] is False
    handshake = steps_of(answer)["handshake"]
    assert handshake["ok"] is False and "manager login and password" in handshake["detail"]
    for name in STEPS[1:]:
        step = steps_of(answer)[name]
        assert step["ok"] is False and step["skipped"] is True and "handshake failed" in step["detail"]
    body = response.get_data(as_text=True)
    assert "Not-The-Password1" not in body and sim.manager_password not in body


def test_a_closed_port_is_unreachable_and_answers_fast(client, admin, sim, app, monkeypatch):
    monkeypatch.setitem(app.config, "TRADING_CHECK_TIMEOUT_SECONDS", 1.0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = add_server(client, admin, sim, base_url=f"http://127.0.0.1:{port}/mt5")
    started = time.monotonic()
    answer = check(client, admin, server["id"]).get_json()
    assert time.monotonic() - started < 3
    handshake = steps_of(answer)["handshake"]
    assert answer["ok"] is False and handshake["ok"] is False
    assert "unreachable" in handshake["detail"]
    assert all(steps_of(answer)[name]["skipped"] for name in STEPS[1:])


def test_a_login_range_partly_taken_on_the_server_says_which_logins(client, admin, sim):
    server = add_server(client, admin, sim)
    taken = server["next_login"] + 2
    gateway = MT5WebAPIGateway(
        sim.server_url("mt5-demo"), sim.manager_login, sim.manager_password, timezone=sim.timezone_minutes
    )
    gateway.create_account(
        NewAccount(
            group="demo\\standard-usd",
            name="Someone Else",
            leverage=100,
            main_password=GOOD_PASSWORD,
            investor_password=GOOD_INVESTOR,
            login=taken,
        )
    )
    answer = check(client, admin, server["id"], login=taken).get_json()
    steps = steps_of(answer)
    assert answer["ok"] is False
    assert steps["user_read"]["ok"] is True and "demo\\standard-usd" in steps["user_read"]["detail"]
    login_range = steps["login_range"]
    assert login_range["ok"] is False and str(taken) in login_range["detail"]
    states = {p["login"]: p["state"] for p in login_range["logins"]}
    assert states[taken] == "taken"
    assert [login for login, state in states.items() if state == "taken"] == [taken]


def test_an_unknown_server_is_404_and_a_check_is_audit_logged(client, admin, sim):
    missing = check(client, admin, 999999)
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"
    server = add_server(client, admin, sim)
    assert check(client, admin, server["id"]).status_code == 200
    logs = client.get("/api/v1/admin/audit-logs?action=trading-servers.check", headers=admin).get_json()["list"]
    assert len(logs) == 1 and logs[0]["target_id"] == str(server["id"])


def test_only_admins_may_check(client, factory, sim, admin):
    server = add_server(client, admin, sim)
    client_headers = factory.headers(client, factory.user())
    assert check(client, client_headers, server["id"]).status_code == 403
    assert client.post(f"/api/v1/admin/trading-servers/{server['id']}/check", json={}).status_code == 401
