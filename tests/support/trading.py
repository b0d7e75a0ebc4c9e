"""Trading fixtures shared by the tests that need a real trading server (the MT simulator)."""

import threading

import pytest

from tests.support.mt_sim import start_simulator

GOOD_PASSWORD = "Trade1234x"
GOOD_INVESTOR = "Watch1234x"


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    with start_simulator(tmp_path_factory.mktemp("mtsim")) as running:
        yield running


@pytest.fixture
def book(app, ctx, sim, factory, client):
    """Two servers (demo and live MT5) with one account type each, and an admin."""
    admin = factory.admin()
    headers = factory.headers(client, admin)

    def server(name, key, is_demo, next_login, last_login):
        response = client.post(
            "/api/v1/admin/trading-servers",
            headers=headers,
            json={
                "name": name,
                "platform": "MT5",
                "is_demo": is_demo,
                "base_url": sim.server_url(key),
                "manager_login": sim.manager_login,
                "manager_password": sim.manager_password,
                "timezone": "Europe/Nicosia",
                "next_login": next_login,
                "last_login": last_login,
            },
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    # Each test takes logins of its own, so one simulator serves the whole module.
    base = book_counter.next()
    demo_server = server("Demo MT5", "mt5-demo", True, 5900000 + base, 5900000 + base + 99)
    live_server = server("Live MT5", "mt5-live", False, 5100000 + base, 5100000 + base + 99)

    def account_type(name, server_row, group, direction="normal"):
        response = client.post(
            "/api/v1/admin/trading-account-types",
            headers=headers,
            json={
                "name": name,
                "server_id": server_row["id"],
                "mt_group": group,
                "leverage_options": [100, 200],
                "fund_direction": direction,
            },
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return {
        "admin": admin,
        "admin_headers": headers,
        "demo_type": account_type("Demo Standard", demo_server, "demo\\standard-usd"),
        "live_type": account_type("Live Standard", live_server, "real\\standard-usd", direction="deposit_only"),
        "demo_server": demo_server,
        "live_server": live_server,
    }


class _Counter:
    def __init__(self):
        self.value = 0
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            self.value += 100
            return self.value


book_counter = _Counter()


@pytest.fixture
def kyc_approved(monkeypatch):
    """Live accounts need approved KYC; the KYC flow has tests of its own."""
    monkeypatch.setattr("crm_app.trading.services.kyc_approved", lambda user_id: True)


def open_demo(client, headers, book, **overrides):
    body = {
        "currency": "USD",
        "is_demo": True,
        "leverage": 100,
        "password": GOOD_PASSWORD,
        "observe_password": GOOD_INVESTOR,
        "trading_account_type_id": book["demo_type"]["id"],
        "trading_platform": "MT5",
        **overrides,
    }
    return client.post("/api/v1/client/trading-accounts", headers=headers, json=body)


def apply_live(client, headers, book, **overrides):
    """A live-account application (#14) on the book's live type."""
    body = {
        "currency": "USD",
        "leverage": 100,
        "password": GOOD_PASSWORD,
        "trading_account_type_id": book["live_type"]["id"],
        "trading_platform": "MT5",
        **overrides,
    }
    return client.post("/api/v1/client/account-applications", headers=headers, json=body)


def pending_application_id(client, book):
    """The id of the newest account-application review item."""
    answer = client.get("/api/v1/admin/audits?type=account_application", headers=book["admin_headers"])
    return answer.get_json()["list"][0]["id"]


def open_live(client, headers, book, account_type=None, **overrides):
    """A live account, opened as the app opens one: the client applies (#14), an admin
    approves. The client needs approved KYC (`factory.approved_kyc`). Returns its id."""
    account_type = account_type or book["live_type"]
    response = apply_live(
        client,
        headers,
        book,
        trading_account_type_id=account_type["id"],
        currency=account_type.get("currency", "USD"),
        **overrides,
    )
    assert response.status_code == 201, response.get_json()
    item_id = pending_application_id(client, book)
    approved = client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=book["admin_headers"], json={})
    assert approved.status_code == 200, approved.get_json()
    return approved.get_json()["object"]["trading_account_id"]


def add_live_type(client, book, name="Live Normal", direction="normal", currency="USD"):
    """Another account type on the book's live server (the book's own live type only takes deposits)."""
    response = client.post(
        "/api/v1/admin/trading-account-types",
        headers=book["admin_headers"],
        json={
            "name": name,
            "server_id": book["live_server"]["id"],
            "mt_group": f"real\\normal-{currency.lower()}",
            "leverage_options": [100, 200],
            "fund_direction": direction,
            "currency": currency,
        },
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()
