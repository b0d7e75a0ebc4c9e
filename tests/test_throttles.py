"""Throttles answer 429 with `Retry-After`, in the one error shape: sign-in failures (per
email and per IP), email codes (resend delay per address and scene, and per IP), and the
routes that move money (per user and route, replays of a known Idempotency-Key exempt)."""

import time

import pytest

from tests.support.money import verified_client
from tests.support.trading import open_live

ERROR_KEYS = {"code", "status", "message", "errors"}
MONEY_ROUTES = [
    "/api/v1/client/deposits",
    "/api/v1/client/deposits/submit",
    "/api/v1/client/withdrawals",
    "/api/v1/client/transfers",
]


def assert_throttled(response, window, code="too_many_requests"):
    body = response.get_json()
    assert response.status_code == 429, body
    assert set(body) == ERROR_KEYS and body["status"] == 429 and body["code"] == code, body
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window, retry_after
    return retry_after


def login(client, email, password, **kwargs):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password}, **kwargs)


def ask_code(client, email, scene="register", **kwargs):
    return client.post(
        "/api/v1/auth/email-code", json={"email": email, "scene": scene, "received_at": int(time.time())}, **kwargs
    )


# Sign-in ---------------------------------------------------------------------------------


def test_login_failures_per_email_end_in_429_with_retry_after(client, factory, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 2)
    user = factory.user()
    for _ in range(2):
        assert login(client, user.email, "Wr0ng-password").status_code == 401
    assert_throttled(login(client, user.email, "Wr0ng-password"), app.config["LOGIN_FAILURE_WINDOW_SECONDS"])


def test_login_failures_per_ip_end_in_429_with_retry_after(client, factory, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_IP", 2)
    for n in range(2):
        assert login(client, f"nobody{n}@example.test", "Wr0ng-password").status_code == 401
    assert_throttled(login(client, "nobody9@example.test", "x"), app.config["LOGIN_FAILURE_WINDOW_SECONDS"])


# Email codes -----------------------------------------------------------------------------


def test_asking_for_a_code_again_too_soon_is_429_with_retry_after(client, app):
    assert ask_code(client, "soon@example.test").status_code == 200
    assert_throttled(
        ask_code(client, "soon@example.test"), app.config["EMAIL_CODE_RESEND_SECONDS"], code="email_code_too_soon"
    )


def test_email_codes_per_ip_are_limited_by_the_setting(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "EMAIL_CODE_MAX_PER_IP_HOUR", 3)
    for n in range(3):
        assert ask_code(client, f"many{n}@example.test").status_code == 200
    assert_throttled(ask_code(client, "many9@example.test"), 3600)
    # Another address is not held back by this one.
    other_ip = {"environ_base": {"REMOTE_ADDR": "198.51.100.7"}}
    assert ask_code(client, "many9@example.test", **other_ip).status_code == 200


# Money routes ----------------------------------------------------------------------------


@pytest.fixture
def money_limit(app, monkeypatch):
    monkeypatch.setitem(app.config, "MONEY_THROTTLE_MAX_REQUESTS", 3)
    monkeypatch.setitem(app.config, "MONEY_THROTTLE_WINDOW_SECONDS", 30)
    return 3


@pytest.mark.parametrize("path", MONEY_ROUTES)
def test_each_money_route_is_throttled_per_user(client, factory, money_limit, path):
    user, stranger = factory.user(), factory.user()
    headers = factory.headers(client, user)
    for _ in range(money_limit):
        # Refused requests count as well: the throttle is on asking, not on succeeding.
        assert client.post(path, headers=headers, json={}).status_code == 422
    assert_throttled(client.post(path, headers=headers, json={}), 30)
    # Another user, and another money route of the same user, are not held back.
    assert client.post(path, headers=factory.headers(client, stranger), json={}).status_code == 422
    other_path = next(p for p in MONEY_ROUTES if p != path)
    assert client.post(other_path, headers=headers, json={}).status_code == 422


def test_the_money_throttle_is_a_setting_and_its_window_ends(client, factory, app, monkeypatch):
    monkeypatch.setitem(app.config, "MONEY_THROTTLE_MAX_REQUESTS", 1)
    monkeypatch.setitem(app.config, "MONEY_THROTTLE_WINDOW_SECONDS", 1)
    headers = factory.headers(client, factory.user())
    assert client.post(MONEY_ROUTES[0], headers=headers, json={}).status_code == 422
    assert_throttled(client.post(MONEY_ROUTES[0], headers=headers, json={}), 1)
    time.sleep(2.1)
    assert client.post(MONEY_ROUTES[0], headers=headers, json={}).status_code == 422


def test_a_retry_with_a_known_idempotency_key_is_replayed_not_throttled(client, factory, book, money_limit):
    """A client that lost an answer must always be able to learn it, throttle or not."""
    admin = book["admin_headers"]
    client.post(
        "/api/v1/admin/currencies",
        headers=admin,
        json={"code": "USD", "name_en": "US Dollar", "name_zh": "美元", "methods": ["bank_transfer"]},
    )
    channel = client.post(
        "/api/v1/admin/deposit-channels",
        headers=admin,
        json={
            "method": "bank_transfer",
            "name": "Bank (USD)",
            "account_info": "Demo Bank",
            "allowed_currencies": ["USD"],
            "min_amount": "10.00",
            "max_amount": "50000.00",
            "pay_type": "bank_account",
            "pay_data": {"bank": "Demo Bank"},
        },
    ).get_json()
    _, headers = verified_client(client, factory)
    account = open_live(client, headers, book)  # deposits go into live accounts only
    body = {"deposit_amount": "100.00", "remittance_id": channel["id"], "trading_account_id": account}
    keyed = {**headers, "Idempotency-Key": "draft-1"}

    first = client.post(MONEY_ROUTES[0], headers=keyed, json=body)
    assert first.status_code == 201, first.get_json()
    for _ in range(money_limit - 1):
        client.post(MONEY_ROUTES[0], headers=headers, json={})
    assert_throttled(client.post(MONEY_ROUTES[0], headers=headers, json=body), 30)
    # A new key is new work: throttled. The known key is replayed.
    assert_throttled(client.post(MONEY_ROUTES[0], headers={**headers, "Idempotency-Key": "draft-2"}, json=body), 30)
    again = client.post(MONEY_ROUTES[0], headers=keyed, json=body)
    assert again.status_code == 201 and again.headers.get("Idempotency-Replayed") == "true"
    assert again.get_json() == first.get_json()
    # The same key with another body is still the 409 it always is.
    assert client.post(MONEY_ROUTES[0], headers=keyed, json={**body, "remark": "x"}).status_code == 409


def test_the_money_throttle_is_documented_on_each_money_route(app):
    with app.test_request_context():
        from crm_app.extensions import api

        paths = api.spec.to_dict()["paths"]
    for path in MONEY_ROUTES:
        response = paths[path]["post"]["responses"]["429"]
        assert "Retry-After" in response["headers"], path
