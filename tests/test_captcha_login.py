"""Login behind the Tencent captcha (#2) and the ticket check route (#5), against the
loopback server that speaks Tencent's DescribeCaptchaResult protocol."""

import pytest
from sqlalchemy import func, select

from crm_app.auth.models import AuthSession
from crm_app.extensions import db
from tests.fakes.tencent_captcha import FakeTencentCaptcha
from tests.support.factory import PASSWORD

LOGIN = "/api/v1/auth/login"
VERIFY = "/api/v1/captcha/verify"
SECRET_ID = "AKIDloginTestSecretId"
SECRET_KEY = "loginTestSecretKey"
APP_ID = 190054321
APP_SECRET_KEY = "loginTestAppSecretKey"


@pytest.fixture
def fake():
    with FakeTencentCaptcha(
        secret_id=SECRET_ID, secret_key=SECRET_KEY, app_id=APP_ID, app_secret_key=APP_SECRET_KEY
    ) as server:
        yield server


@pytest.fixture
def captcha(app, monkeypatch, fake):
    """Captcha switched on and pointed at the fake, for this test only."""
    for key, value in {
        "CAPTCHA_ENABLED": True,
        "CAPTCHA_ENDPOINT": fake.base_url,
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
        "CAPTCHA_APP_ID": APP_ID,
        "CAPTCHA_APP_SECRET_KEY": APP_SECRET_KEY,
        "CAPTCHA_TIMEOUT_SECONDS": 2,
    }.items():
        monkeypatch.setitem(app.config, key, value)
    return fake


# -- helpers ---------------------------------------------------------------------


def assert_error(response, status, code, error_keys=()):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"code", "status", "message", "errors"}, body
    assert body["code"] == code, body
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], dict)
    for key in error_keys:
        assert key in body["errors"], body
    return body


def sessions():
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(AuthSession))


def login(client, email, password=PASSWORD, ticket=None, randstr=None, **headers):
    if ticket is not None:
        headers["Captcha-Token"] = ticket
    if randstr is not None:
        headers["Captcha-Randstr"] = randstr
    return client.post(LOGIN, json={"email": email, "password": password}, headers=headers)


def verify(client, ticket, rand_str, app_id=APP_ID, user_ip="203.0.113.5"):
    return client.post(VERIFY, json={"app_id": app_id, "rand_str": rand_str, "ticket": ticket, "user_ip": user_ip})


# -- login -------------------------------------------------------------------------


def test_login_without_captcha_headers_is_422_captcha_required(client, factory, captcha):
    user = factory.user()

    response = login(client, user.email)

    assert_error(response, 422, "captcha_required", ["Captcha-Token", "Captcha-Randstr"])
    assert sessions() == 0
    assert captcha.requests == []


@pytest.mark.parametrize("sent", ["token_only", "randstr_only", "empty_values"])
def test_login_with_incomplete_captcha_headers_is_422_captcha_required(client, factory, captcha, sent):
    user = factory.user()
    captcha.add_valid_ticket("t-incomplete", "r-incomplete")
    ticket, randstr = {
        "token_only": ("t-incomplete", None),
        "randstr_only": (None, "r-incomplete"),
        "empty_values": ("", ""),
    }[sent]

    response = login(client, user.email, ticket=ticket, randstr=randstr)

    assert_error(response, 422, "captcha_required", ["Captcha-Token"])
    assert sessions() == 0
    assert captcha.requests == []


def test_login_with_valid_captcha_ticket_succeeds(client, factory, captcha):
    user = factory.user()
    captcha.add_valid_ticket("ticket-ok", "rand-ok")

    response = login(client, user.email, ticket="ticket-ok", randstr="rand-ok", **{"Captcha-Action": "login"})

    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == {"token", "refresh_token", "user_info"}
    assert sessions() == 1
    [sent] = captcha.requests
    assert sent["Ticket"] == "ticket-ok"
    assert sent["Randstr"] == "rand-ok"
    assert sent["CaptchaAppId"] == APP_ID
    assert sent["UserIp"] == "127.0.0.1"


def test_replayed_captcha_ticket_is_422_captcha_failed(client, factory, captcha):
    user = factory.user()
    captcha.add_valid_ticket("ticket-once", "rand-once")
    assert login(client, user.email, ticket="ticket-once", randstr="rand-once").status_code == 200

    response = login(client, user.email, ticket="ticket-once", randstr="rand-once")

    assert_error(response, 422, "captcha_failed", ["Captcha-Token"])
    assert sessions() == 1


@pytest.mark.parametrize("case", ["unknown_ticket", "wrong_randstr"])
def test_bad_captcha_ticket_is_422_captcha_failed(client, factory, captcha, case):
    user = factory.user()
    captcha.add_valid_ticket("ticket-real", "rand-real")
    ticket, randstr = ("ticket-forged", "rand-real") if case == "unknown_ticket" else ("ticket-real", "rand-wrong")

    response = login(client, user.email, ticket=ticket, randstr=randstr)

    assert_error(response, 422, "captcha_failed", ["Captcha-Token"])
    assert sessions() == 0


def test_captcha_is_checked_before_the_password(client, factory, captcha):
    user = factory.user()

    response = login(client, user.email, password="Wr0ngPassword", ticket="forged", randstr="forged")

    # A robot learns nothing about the password without passing the captcha.
    assert_error(response, 422, "captcha_failed")


@pytest.mark.parametrize("failure", ["stopped", "http_500", "garbage"])
def test_captcha_service_down_is_503_captcha_unavailable(client, factory, captcha, failure):
    user = factory.user()
    captcha.add_valid_ticket("ticket-down", "rand-down")
    if failure == "stopped":
        captcha.stop()
    elif failure == "http_500":
        captcha.fail_with_http_500 = True
    else:
        captcha.reply_with_garbage = True

    response = login(client, user.email, ticket="ticket-down", randstr="rand-down")

    body = assert_error(response, 503, "captcha_unavailable")
    assert SECRET_KEY not in str(body) and APP_SECRET_KEY not in str(body)
    assert sessions() == 0


def test_captcha_misconfigured_secret_is_503_not_a_user_error(client, factory, captcha, app, monkeypatch):
    monkeypatch.setitem(app.config, "TENCENTCLOUD_SECRET_KEY", "not-the-right-key")
    user = factory.user()
    captcha.add_valid_ticket("ticket-cfg", "rand-cfg")

    response = login(client, user.email, ticket="ticket-cfg", randstr="rand-cfg")

    assert_error(response, 503, "captcha_unavailable")
    assert sessions() == 0


def test_captcha_not_asked_when_disabled(client, factory, fake):
    user = factory.user()

    assert login(client, user.email).status_code == 200
    assert fake.requests == []


# -- #5 POST /api/v1/captcha/verify -------------------------------------------------------


def test_captcha_verify_answers_true_for_a_good_ticket_then_false_on_replay(client, ctx, captcha):
    captcha.add_valid_ticket("ticket-verify", "rand-verify")

    first = verify(client, "ticket-verify", "rand-verify")
    replay = verify(client, "ticket-verify", "rand-verify")

    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"is_valid": True}
    assert replay.status_code == 200
    assert replay.get_json() == {"is_valid": False}
    assert captcha.requests[0]["UserIp"] == "203.0.113.5"


def test_captcha_verify_answers_false_for_unknown_ticket(client, ctx, captcha):
    response = verify(client, "never-issued", "whatever")

    assert response.status_code == 200
    assert response.get_json() == {"is_valid": False}


def test_captcha_verify_for_another_app_id_is_false_without_asking_tencent(client, ctx, captcha):
    captcha.add_valid_ticket("ticket-other-app", "rand-other-app")

    response = verify(client, "ticket-other-app", "rand-other-app", app_id=APP_ID + 1)

    assert response.status_code == 200
    assert response.get_json() == {"is_valid": False}
    assert captcha.requests == []
    # The ticket was not spent by the refused check.
    assert verify(client, "ticket-other-app", "rand-other-app").get_json() == {"is_valid": True}


def test_captcha_verify_when_service_down_is_503(client, ctx, captcha):
    captcha.fail_with_http_500 = True

    assert_error(verify(client, "ticket", "rand"), 503, "captcha_unavailable")


@pytest.mark.parametrize(
    "payload, bad_field",
    [
        ({"rand_str": "r", "ticket": "t", "user_ip": "1.2.3.4"}, "app_id"),
        ({"app_id": "my-app", "rand_str": "r", "ticket": "t", "user_ip": "1.2.3.4"}, "app_id"),
        ({"app_id": APP_ID, "rand_str": "", "ticket": "t", "user_ip": "1.2.3.4"}, "rand_str"),
        ({"app_id": APP_ID, "rand_str": "r", "ticket": "", "user_ip": "1.2.3.4"}, "ticket"),
        ({"app_id": APP_ID, "rand_str": "r", "ticket": "t"}, "user_ip"),
        ({"app_id": APP_ID, "rand_str": "r", "ticket": "t", "user_ip": "1.2.3.4", "secret": "x"}, "secret"),
    ],
    ids=["no_app_id", "app_id_str", "empty_rand_str", "empty_ticket", "no_user_ip", "unknown_field"],
)
def test_captcha_verify_rejects_bad_body(client, ctx, captcha, payload, bad_field):
    assert_error(client.post(VERIFY, json=payload), 422, "validation_error", [bad_field])
    assert captcha.requests == []
