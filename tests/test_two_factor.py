"""TOTP two-factor sign-in (RFC 6238): enrolment, the code at login, recovery codes,
disabling it, and the broker setting that requires it of every admin."""

import base64
import time
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from sqlalchemy import select

from crm_app.admin.models import AuditLog
from crm_app.auth.models import OtpRecoveryCode, UserOtp
from crm_app.common import crypto
from crm_app.extensions import db
from tests.support.factory import PASSWORD
from tests.test_security_matrix import ROUTES

LOGIN = "/api/v1/auth/login"
STATUS = "/api/v1/auth/2fa"
SETUP = "/api/v1/auth/2fa/setup"
CONFIRM = "/api/v1/auth/2fa/confirm"
DISABLE = "/api/v1/auth/2fa"
REFRESH = "/api/v1/auth/refresh"
STEP = 30


def assert_error(response, status, code, error_keys=()):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"code", "status", "message", "errors"}, body
    assert body["code"] == code, body
    for key in error_keys:
        assert key in body["errors"], body
    return body


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def login(client, email, otp_code=None, password=PASSWORD):
    body = {"email": email, "password": password}
    if otp_code is not None:
        body["otp_code"] = otp_code
    return client.post(LOGIN, json=body)


def audit_actions(user_id):
    db.session.rollback()
    return list(db.session.scalars(select(AuditLog.action).where(AuditLog.actor_id == user_id).order_by(AuditLog.id)))


def code_at(secret, steps_ahead=0):
    return pyotp.TOTP(secret).at(time.time() + steps_ahead * STEP)


def enrol(client, headers):
    """Set up and confirm; answers (secret, recovery codes). The confirming code is the
    current step's, so the next sign-in needs a later step's."""
    setup = client.post(SETUP, headers=headers)
    assert setup.status_code == 200, setup.get_json()
    secret = setup.get_json()["secret"]
    confirm = client.post(CONFIRM, json={"otp_code": code_at(secret)}, headers=headers)
    assert confirm.status_code == 200, confirm.get_json()
    return secret, confirm.get_json()["recovery_codes"]


@pytest.fixture
def wide_window(app, monkeypatch):
    """Codes of several steps ahead are accepted: one test signs in more than twice."""
    monkeypatch.setitem(app.config, "OTP_VALID_WINDOW", 6)


# -- enrolment ---------------------------------------------------------------------------


def test_setup_answers_the_secret_its_otpauth_uri_and_a_qr_png(client, factory):
    admin = factory.admin(email="boss@example.test")
    headers = factory.headers(client, admin)

    response = client.post(SETUP, headers=headers)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"secret", "otpauth_uri", "qr_png_base64"}
    uri = urlparse(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert "boss%40example.test" in uri.path or "boss@example.test" in uri.path
    assert parse_qs(uri.query)["secret"] == [body["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["Forex broker CRM"]
    assert base64.b64decode(body["qr_png_base64"]).startswith(b"\x89PNG\r\n\x1a\n")
    # Stored encrypted, and pending until confirmed.
    db.session.rollback()
    row = db.session.get(UserOtp, admin.id)
    assert body["secret"] not in row.secret_encrypted
    assert crypto.decrypt(row.secret_encrypted, "totp-secret") == body["secret"]
    assert row.enabled_at is None
    assert client.get(STATUS, headers=headers).get_json() == {
        "enabled": False,
        "pending": True,
        "recovery_codes_left": 0,
        "required": False,
    }
    # Not on yet: sign-in asks for no code.
    assert login(client, admin.email).status_code == 200


def test_setup_again_before_confirming_replaces_the_secret(client, factory):
    user = factory.user()
    headers = factory.headers(client, user)
    first = client.post(SETUP, headers=headers).get_json()["secret"]
    second = client.post(SETUP, headers=headers).get_json()["secret"]
    assert first != second

    assert_error(client.post(CONFIRM, json={"otp_code": code_at(first)}, headers=headers), 422, "otp_invalid")
    assert client.post(CONFIRM, json={"otp_code": code_at(second)}, headers=headers).status_code == 200


def test_confirm_before_setup_is_422_otp_not_started(client, factory):
    user = factory.user()

    response = client.post(CONFIRM, json={"otp_code": "123456"}, headers=factory.headers(client, user))

    assert_error(response, 422, "otp_not_started", ["otp_code"])


@pytest.mark.parametrize("code", ["000000", "12345", "abcdef", " "])
def test_confirm_with_a_wrong_code_is_422_and_leaves_it_off(client, factory, code):
    user = factory.user()
    headers = factory.headers(client, user)
    secret = client.post(SETUP, headers=headers).get_json()["secret"]
    if code == "000000" and code_at(secret) == code:
        code = "999999"

    response = client.post(CONFIRM, json={"otp_code": code}, headers=headers)

    assert_error(response, 422, "otp_invalid", ["otp_code"])
    db.session.rollback()
    assert db.session.get(UserOtp, user.id).enabled_at is None


def test_confirm_turns_it_on_and_answers_recovery_codes_once_stored_hashed(client, factory, app):
    admin = factory.admin()
    headers = factory.headers(client, admin)

    secret, codes = enrol(client, headers)

    assert len(codes) == app.config["OTP_RECOVERY_CODES"] == len(set(codes))
    db.session.rollback()
    stored = list(db.session.scalars(select(OtpRecoveryCode.code_hash).where(OtpRecoveryCode.user_id == admin.id)))
    assert len(stored) == len(codes)
    assert not any(code in h or code.replace("-", "") in h for code in codes for h in stored)
    assert "auth.otp_setup" in audit_actions(admin.id) and "auth.otp_enabled" in audit_actions(admin.id)
    assert client.get(STATUS, headers=headers).get_json()["enabled"] is True
    # Once on: no second setup, no second confirmation (the codes are not shown again).
    assert_error(client.post(SETUP, headers=headers), 409, "otp_already_enabled")
    assert_error(
        client.post(CONFIRM, json={"otp_code": code_at(secret, 1)}, headers=headers), 409, "otp_already_enabled"
    )


# -- sign-in -----------------------------------------------------------------------------


def test_sign_in_with_totp_on_needs_a_good_code(client, factory):
    admin = factory.admin()
    secret, _ = enrol(client, factory.headers(client, admin))

    assert_error(login(client, admin.email), 422, "otp_required", ["otp_code"])
    assert_error(
        login(client, admin.email, "000000" if code_at(secret, 1) != "000000" else "111111"), 422, "otp_invalid"
    )
    # A wrong password says nothing about the code.
    assert_error(
        login(client, admin.email, code_at(secret, 1), password="Wrong-Password-73"), 401, "invalid_credentials"
    )

    response = login(client, admin.email, code_at(secret, 1))
    assert response.status_code == 200, response.get_json()


def test_a_code_cannot_be_replayed_within_its_window(client, factory):
    user = factory.user()
    secret, _ = enrol(client, factory.headers(client, user))
    code = code_at(secret, 1)
    assert login(client, user.email, code).status_code == 200

    assert_error(login(client, user.email, code), 422, "otp_invalid")
    # Nor the code of the enrolment's step, older than the last one used.
    assert_error(login(client, user.email, code_at(secret)), 422, "otp_invalid")


def test_missing_and_wrong_codes_count_as_failed_sign_ins(client, factory, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    user = factory.user()
    secret, _ = enrol(client, factory.headers(client, user))

    assert_error(login(client, user.email), 422, "otp_required")
    assert_error(login(client, user.email, "abc"), 422, "otp_invalid")
    assert_error(login(client, user.email, "nothing-at-all"), 422, "otp_invalid")

    # Locked for this address now, good code or not: codes are not guessed faster than passwords.
    assert_error(login(client, user.email, code_at(secret, 1)), 429, "too_many_requests")
    reasons = [
        row.details.get("reason")
        for row in db.session.scalars(select(AuditLog).where(AuditLog.action == "auth.login_failed"))
    ]
    assert reasons == ["otp_required", "otp_invalid", "otp_invalid"]


def test_a_recovery_code_signs_in_once_and_is_audited(client, factory):
    user = factory.user()
    headers = factory.headers(client, user)
    _, codes = enrol(client, headers)

    response = login(client, user.email, codes[0].upper().replace("-", " "))  # as read off paper
    assert response.status_code == 200, response.get_json()
    assert "auth.otp_recovery_code_used" in audit_actions(user.id)

    assert_error(login(client, user.email, codes[0]), 422, "otp_invalid")
    token = response.get_json()["token"]
    assert client.get(STATUS, headers=bearer(token)).get_json()["recovery_codes_left"] == len(codes) - 1
    # Another user's recovery code is no good here.
    other = factory.user()
    _, other_codes = enrol(client, factory.headers(client, other))
    assert_error(login(client, user.email, other_codes[0]), 422, "otp_invalid")


# -- disabling -----------------------------------------------------------------------------


def test_disable_needs_the_password_and_a_code(client, factory, wide_window):
    user = factory.user()
    headers = factory.headers(client, user)
    secret, codes = enrol(client, headers)

    wrong_password = client.delete(
        DISABLE, json={"password": "Wrong-Password-73", "otp_code": code_at(secret, 1)}, headers=headers
    )
    assert_error(wrong_password, 422, "wrong_password", ["password"])
    wrong_code = client.delete(DISABLE, json={"password": PASSWORD, "otp_code": "nope"}, headers=headers)
    assert_error(wrong_code, 422, "otp_invalid", ["otp_code"])
    assert_error(login(client, user.email), 422, "otp_required")

    done = client.delete(DISABLE, json={"password": PASSWORD, "otp_code": code_at(secret, 1)}, headers=headers)
    assert done.status_code == 204, done.get_json()
    assert "auth.otp_disabled" in audit_actions(user.id)
    assert login(client, user.email).status_code == 200
    db.session.rollback()
    assert db.session.get(UserOtp, user.id) is None
    assert db.session.scalars(select(OtpRecoveryCode).where(OtpRecoveryCode.user_id == user.id)).all() == []
    again = client.delete(DISABLE, json={"password": PASSWORD, "otp_code": codes[0]}, headers=headers)
    assert_error(again, 409, "otp_not_enabled")


def test_disable_with_a_recovery_code(client, factory):
    user = factory.user()
    headers = factory.headers(client, user)
    _, codes = enrol(client, headers)

    response = client.delete(DISABLE, json={"password": PASSWORD, "otp_code": codes[3]}, headers=headers)

    assert response.status_code == 204, response.get_json()
    assert login(client, user.email).status_code == 200


# -- the broker requires it of admins ----------------------------------------------------------


def require_admin_otp(client, factory, on=True):
    admin = factory.admin()
    response = client.put(
        "/api/v1/admin/config/broker", json={"require_admin_otp": on}, headers=factory.headers(client, admin)
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["require_admin_otp"] is on
    return admin


def test_the_setting_defaults_off_and_is_not_public(client, factory):
    public = client.get("/api/v1/config/broker").get_json()
    assert "require_admin_otp" not in public
    admin = factory.admin()
    assert client.get("/api/v1/admin/audits", headers=factory.headers(client, admin)).status_code == 200


def enrolment_only_routes():
    allowed = {
        "GET /api/v1/auth/2fa",
        "POST /api/v1/auth/2fa/setup",
        "POST /api/v1/auth/2fa/confirm",
        "POST /api/v1/auth/logout",
        "GET /api/v1/auth/permissions",
    }
    refused = [r for r in ROUTES if r.role in ("any", "admin") and r.id not in allowed]
    return allowed, refused


def test_an_admin_without_totp_reaches_only_the_enrolment_routes(client, factory):
    require_admin_otp(client, factory)
    admin = factory.admin()
    response = login(client, admin.email)
    assert response.status_code == 200, response.get_json()
    headers = bearer(response.get_json()["token"])
    allowed, refused = enrolment_only_routes()

    for route in refused:
        path = route.path
        for name in route.params:
            path = path.replace("{" + name + "}", "1")
        answer = client.open(path, method=route.method, headers=headers)
        assert_error(answer, 403, "otp_enrolment_required")
    assert client.get(STATUS, headers=headers).get_json()["required"] is True
    assert client.get("/api/v1/auth/permissions", headers=headers).status_code == 200

    # Enrolled: a refresh (or a new sign-in with a code) opens the back office.
    secret = client.post(SETUP, headers=headers).get_json()["secret"]
    assert client.post(CONFIRM, json={"otp_code": code_at(secret)}, headers=headers).status_code == 200
    assert_error(client.get("/api/v1/admin/audits", headers=headers), 403, "otp_enrolment_required")
    refreshed = client.post(REFRESH, headers=bearer(response.get_json()["refresh_token"]))
    assert refreshed.status_code == 200, refreshed.get_json()
    assert client.get("/api/v1/admin/audits", headers=bearer(refreshed.get_json()["token"])).status_code == 200
    full = login(client, admin.email, code_at(secret, 1))
    assert client.get("/api/v1/admin/audits", headers=bearer(full.get_json()["token"])).status_code == 200


def test_switching_the_setting_on_restricts_an_admin_at_the_next_refresh(client, factory):
    admin = factory.admin()
    tokens = login(client, admin.email).get_json()
    require_admin_otp(client, factory)

    refreshed = client.post(REFRESH, headers=bearer(tokens["refresh_token"])).get_json()

    assert_error(client.get("/api/v1/admin/audits", headers=bearer(refreshed["token"])), 403, "otp_enrolment_required")


def test_switching_the_setting_on_restricts_a_session_that_already_exists(client, factory):
    """A token from before the switch carries no mark: the rule is checked as it is now, so an
    admin without two-factor can neither work on nor switch the requirement off again."""
    admin = factory.admin()
    headers = bearer(login(client, admin.email).get_json()["token"])
    assert client.get("/api/v1/admin/audits", headers=headers).status_code == 200
    require_admin_otp(client, factory)

    assert_error(client.get("/api/v1/admin/audits", headers=headers), 403, "otp_enrolment_required")
    answer = client.put("/api/v1/admin/config/broker", json={"require_admin_otp": False}, headers=headers)
    assert_error(answer, 403, "otp_enrolment_required")
    assert client.get(STATUS, headers=headers).status_code == 200  # it can still enrol


def test_the_setting_leaves_clients_ibs_and_enrolled_admins_alone(client, factory):
    require_admin_otp(client, factory)
    user = factory.user()
    ib = factory.ib()
    admin = factory.admin()
    secret, _ = enrol(client, factory.headers(client, admin))  # enrolment routes are open to it

    for who in (user, ib):
        token = login(client, who.email).get_json()["token"]
        assert client.get("/api/v1/client/trading-accounts", headers=bearer(token)).status_code == 200
    token = login(client, admin.email, code_at(secret, 1)).get_json()["token"]
    assert client.get("/api/v1/admin/audits", headers=bearer(token)).status_code == 200


def test_an_enrolment_only_token_cannot_disable_or_skip(client, factory):
    require_admin_otp(client, factory)
    admin = factory.admin()
    headers = bearer(login(client, admin.email).get_json()["token"])

    response = client.delete(DISABLE, json={"password": PASSWORD, "otp_code": "123456"}, headers=headers)

    assert_error(response, 403, "otp_enrolment_required")


@pytest.mark.parametrize("language, text", [("zh-CN", "两步验证"), ("zh-TW", "兩步驟驗證")])
def test_two_factor_errors_are_translated(client, factory, language, text):
    user = factory.user()
    enrol(client, factory.headers(client, user))

    response = client.post(
        LOGIN, json={"email": user.email, "password": PASSWORD, "otp_code": "x"}, headers={"Accept-Language": language}
    )

    body = assert_error(response, 422, "otp_invalid")
    assert text in body["message"] and text in body["errors"]["otp_code"][0]


def test_a_time_step_is_claimed_once_even_from_a_stale_read(client, factory):
    """Two sign-ins racing with one code both read the row before either writes: only the
    conditional UPDATE decides, so one of them wins (SQLite takes no row locks)."""
    from crm_app.auth.otp import _claim_step

    user = factory.user()
    enrol(client, factory.headers(client, user))
    with client.application.app_context():
        from crm_app.auth.otp import enrolment

        step = enrolment(user.id).last_used_step + 5
        assert _claim_step(user.id, step) is True
        assert _claim_step(user.id, step) is False
        assert _claim_step(user.id, step - 1) is False
        assert _claim_step(user.id, step + 1) is True
