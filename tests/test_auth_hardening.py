"""Sign-up and sign-in hardening: no account enumeration on register, no lock-out of
an account by strangers, passwords by ASVS 2.1, and `flask seed-demo` in production."""

import pytest
from sqlalchemy import func, select

from crm_app.auth.models import AuthSession, User
from crm_app.extensions import db
from tests.fakes.tencent_captcha import FakeTencentCaptcha
from tests.support.factory import PASSWORD

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
PASSWORD_CHANGE = "/api/v1/auth/password"
ATTACKER = {"REMOTE_ADDR": "198.51.100.66"}
ATTACKER_2 = {"REMOTE_ADDR": "198.51.100.67"}
VICTIM = {"REMOTE_ADDR": "203.0.113.10"}


def assert_error(response, status, code, error_keys=()):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"code", "status", "message", "errors"}, body
    assert body["code"] == code, body
    for key in error_keys:
        assert key in body["errors"], body
    return body


def count(model, *where):
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def login(client, email, password=PASSWORD, environ=None, headers=None):
    return client.post(
        LOGIN, json={"email": email, "password": password}, environ_base=environ or {}, headers=headers or {}
    )


def set_register_code_required(client, factory, required):
    admin = factory.admin()
    response = client.put(
        "/api/v1/admin/config/broker",
        json={"email_code_required": {"register": required}},
        headers=factory.headers(client, admin),
    )
    assert response.status_code == 200, response.get_json()


# -- #6 register answers alike for known and unknown addresses ---------------------------


@pytest.mark.parametrize("sent", ["wrong_code", "no_code"])
def test_register_with_a_bad_code_answers_the_same_for_a_known_and_an_unknown_address(
    client, factory, smtp_sink, run_jobs, sent
):
    """Before: a known address heard `email_taken` whatever the code, so anyone could
    test which addresses have accounts."""
    known = factory.user(email="known@example.test")
    answers = []
    for email in (known.email, "stranger@example.test"):
        # Both ask for a code first; the known address gets none mailed, the answer is the same.
        asked = client.post(
            "/api/v1/auth/email-code", json={"email": email, "scene": "register", "received_at": _now()}
        )
        assert asked.status_code == 200, asked.get_json()
        body = {"email": email, "password": "Amber-Thistle-31"}
        if sent == "wrong_code":
            body["email_code"] = "000000"
        response = client.post(REGISTER, json=body)
        answers.append((response.status_code, response.get_json()))

    (known_status, known_body), (unknown_status, unknown_body) = answers
    assert known_status == unknown_status == 422
    assert known_body == unknown_body
    assert known_body["code"] in ("email_code_invalid", "email_code_required")
    assert count(User) == 1


def test_register_with_a_good_code_for_a_known_address_says_email_taken(client, factory, smtp_sink, run_jobs):
    code = factory.email_code(client, smtp_sink, run_jobs, "owner@example.test", "register")
    factory.user(email="Owner@Example.test")  # registered meanwhile (say, by an admin)

    response = client.post(
        REGISTER, json={"email": "owner@example.test", "password": "Amber-Thistle-31", "email_code": code}
    )

    assert_error(response, 422, "email_taken", ["email"])
    assert count(User) == 1


def test_register_without_codes_still_says_email_taken(client, factory):
    """With register codes switched off by the broker there is nothing to check first."""
    set_register_code_required(client, factory, False)
    factory.user(email="plain@example.test")

    response = client.post(REGISTER, json={"email": "plain@example.test", "password": "Amber-Thistle-31"})

    assert_error(response, 422, "email_taken", ["email"])


def _now():
    import time

    return int(time.time())


# -- #7 no lock-out by strangers -----------------------------------------------------------


def test_an_attackers_failures_do_not_lock_the_owner_out_from_another_address(client, factory, app, monkeypatch):
    """Before: five wrong passwords from anywhere locked the account for everyone."""
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    victim = factory.user()

    for _ in range(3):
        assert_error(login(client, victim.email, "Wrong-Password-73", ATTACKER), 401, "invalid_credentials")
    # The attacker's own address is locked for this account, right password or not...
    assert_error(login(client, victim.email, environ=ATTACKER), 429, "too_many_requests")

    # ...but the owner signs in from home.
    response = login(client, victim.email, environ=VICTIM)
    assert response.status_code == 200, response.get_json()
    assert count(AuthSession, AuthSession.user_id == victim.id) == 1


def test_the_per_address_cap_still_holds_across_accounts(client, factory, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_IP", 3)
    user = factory.user()
    for n in range(3):
        login(client, f"guess{n}@example.test", "Wrong-Password-73", ATTACKER)

    assert_error(login(client, user.email, environ=ATTACKER), 429, "too_many_requests")
    assert login(client, user.email, environ=VICTIM).status_code == 200


CAPTCHA_APP = {"secret_id": "AKIDhardening", "secret_key": "hardeningKey", "app_id": 190077, "app_secret_key": "k"}


@pytest.fixture
def captcha_configured(app, monkeypatch):
    """Captcha credentials set but not asked on every sign-in (CAPTCHA_ENABLED off)."""
    with FakeTencentCaptcha(**CAPTCHA_APP) as fake:
        for key, value in {
            "CAPTCHA_ENABLED": False,
            "CAPTCHA_ENDPOINT": fake.base_url,
            "TENCENTCLOUD_SECRET_ID": CAPTCHA_APP["secret_id"],
            "TENCENTCLOUD_SECRET_KEY": CAPTCHA_APP["secret_key"],
            "CAPTCHA_APP_ID": CAPTCHA_APP["app_id"],
            "CAPTCHA_APP_SECRET_KEY": CAPTCHA_APP["app_secret_key"],
            "CAPTCHA_TIMEOUT_SECONDS": 2,
            "LOGIN_MAX_FAILURES": 3,
            "LOGIN_CAPTCHA_AFTER_FAILURES": 4,
        }.items():
            monkeypatch.setitem(app.config, key, value)
        yield fake


def test_failures_across_addresses_ask_for_a_captcha_not_a_lock(client, factory, captcha_configured):
    victim = factory.user()
    for environ in (ATTACKER, ATTACKER, ATTACKER_2, ATTACKER_2):
        assert_error(login(client, victim.email, "Wrong-Password-73", environ), 401, "invalid_credentials")

    # The owner, from a fresh address: a captcha first, then in.
    assert_error(login(client, victim.email, environ=VICTIM), 422, "captcha_required", ["Captcha-Token"])
    assert captcha_configured.requests == []
    captcha_configured.add_valid_ticket("human-ticket", "human-rand")
    forged = login(client, victim.email, environ=VICTIM, headers={"Captcha-Token": "x", "Captcha-Randstr": "y"})
    assert_error(forged, 422, "captcha_failed")
    response = login(
        client, victim.email, environ=VICTIM, headers={"Captcha-Token": "human-ticket", "Captcha-Randstr": "human-rand"}
    )
    assert response.status_code == 200, response.get_json()

    # A good sign-in clears the account's count: the next one needs no captcha.
    assert login(client, victim.email, environ=VICTIM).status_code == 200


def test_a_wrong_password_behind_a_good_captcha_still_counts(client, factory, captcha_configured):
    victim = factory.user()
    for environ in (ATTACKER, ATTACKER, ATTACKER_2, ATTACKER_2):
        login(client, victim.email, "Wrong-Password-73", environ)
    captcha_configured.add_valid_ticket("t1", "r1")

    response = login(
        client, victim.email, "Wrong-Password-73", VICTIM, headers={"Captcha-Token": "t1", "Captcha-Randstr": "r1"}
    )

    assert_error(response, 401, "invalid_credentials")
    assert_error(login(client, victim.email, environ=VICTIM), 422, "captcha_required")


def test_without_captcha_configured_only_the_pair_locks(client, factory, app, monkeypatch):
    """No captcha service to ask: failures across addresses neither lock nor ask."""
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    monkeypatch.setitem(app.config, "LOGIN_CAPTCHA_AFTER_FAILURES", 4)
    victim = factory.user()
    for environ in (ATTACKER, ATTACKER, ATTACKER_2, ATTACKER_2, ATTACKER_2):
        login(client, victim.email, "Wrong-Password-73", environ)

    assert login(client, victim.email, environ=VICTIM).status_code == 200


# -- #11 passwords (ASVS 2.1) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "password, rule",
    [
        ("password1", "password_too_short"),
        ("12345678a", "password_too_short"),
        ("aaaaaaa1", "password_too_short"),
        ("password123", "password_common"),
        ("1234567890", "password_common"),
        ("Passw0rd1234", "password_guessable"),
        ("Client12345", "password_guessable"),
    ],
)
def test_register_refuses_weak_passwords_naming_the_rule(client, factory, smtp_sink, run_jobs, password, rule):
    """Before: `password1`, `12345678a` and `aaaaaaa1` were accepted."""
    set_register_code_required(client, factory, False)

    response = client.post(REGISTER, json={"email": "weak@example.test", "password": password})

    assert_error(response, 422, rule, ["password"])
    assert count(User, User.email_key == "weak@example.test") == 0


def test_a_long_passphrase_without_digits_or_capitals_is_accepted(client, factory):
    """No composition rules (ASVS 2.1.9): length and unguessability are what count."""
    set_register_code_required(client, factory, False)

    response = client.post(REGISTER, json={"email": "phrase@example.test", "password": "violet tram under snow"})

    assert response.status_code == 201, response.get_json()


def test_password_equal_to_the_email_is_refused_whatever_its_case(client, factory):
    set_register_code_required(client, factory, False)

    response = client.post(REGISTER, json={"email": "Mirror.Me@example.test", "password": "mirror.me@EXAMPLE.test"})

    assert_error(response, 422, "password_equals_email", ["password"])


def test_password_change_to_the_same_password_is_refused(client, factory):
    user = factory.user()
    admin = factory.admin()
    client.put(
        "/api/v1/admin/config/broker",
        json={"email_code_required": {"password_change": False}},
        headers=factory.headers(client, admin),
    )

    response = client.post(
        PASSWORD_CHANGE,
        json={"old_password": PASSWORD, "new_password": PASSWORD},
        headers=factory.headers(client, user),
    )

    assert_error(response, 422, "password_reused", ["new_password"])


@pytest.mark.parametrize(
    "language, text",
    [("en", "at least 10 characters"), ("zh-CN", "密码至少需要 10 个字符"), ("zh-TW", "密碼至少需要 10 個字元")],
)
def test_the_password_rule_is_explained_in_three_languages(client, factory, language, text):
    set_register_code_required(client, factory, False)

    response = client.post(
        REGISTER, json={"email": "lang@example.test", "password": "short"}, headers={"Accept-Language": language}
    )

    body = assert_error(response, 422, "password_too_short", ["password"])
    assert text in body["message"]
    assert text.lower() in str(body["errors"]["password"]).lower()


def test_an_admin_cannot_create_a_user_with_a_common_password(client, factory):
    admin = factory.admin()

    response = client.post(
        "/api/v1/admin/users",
        json={"email": "staff@example.test", "password": "password123", "user_type": "admin"},
        headers=factory.headers(client, admin),
    )

    assert_error(response, 422, "password_common", ["password"])
    assert count(User, User.email_key == "staff@example.test") == 0


# -- #12 flask seed-demo in production --------------------------------------------------------


def seed_demo(app, *args):
    with app.app_context():
        return app.test_cli_runner().invoke(args=["seed-demo", *args])


def test_seed_demo_refuses_production_without_allow_production(app, ctx, monkeypatch):
    """Before: it created admin@demo.local with the README's password on a live broker."""
    monkeypatch.setitem(app.config, "APP_ENV", "production")

    result = seed_demo(app)

    assert result.exit_code != 0
    assert "APP_ENV=production" in result.output and "--allow-production" in result.output, result.output
    assert "Traceback" not in result.output
    assert count(User) == 0


def test_seed_demo_in_production_generates_the_admin_password_and_shows_it_once(app, client, monkeypatch):
    import re

    from crm_app.demo import DEMO_ADMIN, DEMO_CLIENT, DEMO_IB, DEMO_PASSWORD

    monkeypatch.setitem(app.config, "APP_ENV", "production")

    result = seed_demo(app, "--allow-production")

    assert result.exit_code == 0, result.output
    admin_password = re.search(rf"{re.escape(DEMO_ADMIN[0])} / (\S+)", result.output).group(1)
    ib_password = re.search(rf"{re.escape(DEMO_IB)} / (\S+)", result.output).group(1)
    client_password = re.search(rf"{re.escape(DEMO_CLIENT)} / (\S+)", result.output).group(1)
    assert admin_password != DEMO_ADMIN[1] and client_password != DEMO_PASSWORD
    # One password per user: knowing the client's must not open the IB's portal.
    assert len({admin_password, ib_password, client_password}) == 3
    assert "shown only now" in result.output
    assert DEMO_ADMIN[1] not in result.output and DEMO_PASSWORD not in result.output
    assert login(client, DEMO_ADMIN[0], DEMO_ADMIN[1]).status_code == 401
    assert login(client, DEMO_ADMIN[0], admin_password).status_code == 200
    assert login(client, DEMO_CLIENT, client_password).status_code == 200

    again = seed_demo(app, "--allow-production")
    assert again.exit_code == 0, again.output
    assert admin_password not in again.output and "password unchanged" in again.output
    assert "shown only now" not in again.output
    assert login(client, DEMO_ADMIN[0], admin_password).status_code == 200


def test_seed_demo_outside_production_keeps_the_published_demo_logins(app, client):
    from crm_app.demo import DEMO_ADMIN

    result = seed_demo(app)

    assert result.exit_code == 0, result.output
    assert f"{DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}" in result.output
    assert login(client, *DEMO_ADMIN).status_code == 200
