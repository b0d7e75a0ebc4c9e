"""Registration (#29), login (#2), tokens (refresh, logout), password change (#1).

Every test drives the real routes and then looks at the database: a refused
request must leave nothing half written (no user, no session, no used code).
"""

from datetime import timedelta

import jwt as pyjwt
import pytest
from sqlalchemy import delete, func, select

from crm_app.admin.models import AuditLog
from crm_app.auth.models import AuthSession, EmailCode, IbTreePath, User
from crm_app.extensions import db
from tests.support.factory import PASSWORD

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
PASSWORD_CHANGE = "/api/v1/auth/password"
PROBE = "/api/v1/auth/permissions"  # any signed-in user may call it
NEW_PASSWORD = "New-Secret-Pine-99"


# -- helpers ---------------------------------------------------------------------


def assert_error(response, status, code, error_keys=()):
    """The one error shape, with this status, code and these per-field errors."""
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


def fresh():
    """Forget this session's cached rows: the next query sees what requests committed."""
    db.session.rollback()


def count(model, *where):
    fresh()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def user_by_email(email):
    fresh()
    return db.session.scalar(select(User).where(User.email_key == email.casefold()))


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def wrong_code(code):
    return f"{(int(code) + 1) % 10**6:06d}"


def register(client, email, password=PASSWORD, headers=None, **extra):
    return client.post(REGISTER, json={"email": email, "password": password, **extra}, headers=headers)


def login(client, email, password=PASSWORD, **kwargs):
    return client.post(LOGIN, json={"email": email, "password": password}, **kwargs)


def set_register_code_required(client, factory, required):
    admin = factory.admin()
    response = client.put(
        "/api/v1/admin/config/broker",
        json={"email_code_required": {"register": required}},
        headers=factory.headers(client, admin),
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# -- register (#29) ----------------------------------------------------------------


def test_register_answers_tokens_and_user_info_and_creates_one_client(client, factory, smtp_sink, run_jobs):
    email = "new.client@example.test"
    code = factory.email_code(client, smtp_sink, run_jobs, email, "register")

    response = register(client, email, email_code=code, headers={"Accept-Language": "zh-CN"})

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == {"token", "refresh_token", "user_info"}
    assert body["user_info"] == {
        "id": body["user_info"]["id"],
        "email": email,
        "first_name": "",
        "last_name": "",
        "full_name": "",
        "user_type": "client",
    }
    assert client.get(PROBE, headers=bearer(body["token"])).status_code == 200

    user = user_by_email(email)
    assert user.id == body["user_info"]["id"]
    assert (user.user_type, user.status, user.parent_ib_id, user.language) == ("client", "enabled", None, "zh-CN")
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert count(User) == 1
    # The client is its own root in the referral tree, with no ancestor.
    assert [(p.ancestor_id, p.depth) for p in db.session.scalars(select(IbTreePath))] == [(user.id, 0)]
    assert count(AuthSession, AuthSession.user_id == user.id) == 1
    assert count(EmailCode, EmailCode.closed_at.is_(None)) == 0


def test_register_email_is_unique_case_insensitively(client, factory, smtp_sink, run_jobs):
    """Only a good code for the address may learn it is taken (its owner's code, asked for
    before the account existed: no register code is mailed to a known address)."""
    code = factory.email_code(client, smtp_sink, run_jobs, "taken@example.test", "register")
    factory.user(email="Taken@Example.test")

    response = register(client, "taken@EXAMPLE.TEST", email_code=code)

    assert_error(response, 422, "email_taken", ["email"])
    assert count(User) == 1
    assert count(AuthSession) == 0


@pytest.mark.parametrize(
    "password, rule",
    [
        ("Abcdef1x9", "password_too_short"),
        ("", "password_too_short"),
        ("x" * 129, "validation_error"),  # the schema stops it before the policy
        ("password1234", "password_common"),
        ("Passw0rd1234", "password_guessable"),
        ("Weak@Example.TEST", "password_equals_email"),
    ],
    ids=["shorter_than_10", "empty", "longer_than_128", "common", "guessable", "the_email"],
)
def test_register_refuses_password_outside_policy(client, factory, smtp_sink, run_jobs, password, rule):
    email = "weak@example.test"
    code = factory.email_code(client, smtp_sink, run_jobs, email, "register")

    response = register(client, email, password=password, email_code=code)

    assert_error(response, 422, rule, ["password"])
    assert count(User) == 0
    # The code was not spent on a refused registration.
    assert count(EmailCode, EmailCode.closed_at.is_(None)) == 1


def test_register_requires_email_code_by_default(client, factory):
    response = register(client, "nocode@example.test")

    assert_error(response, 422, "email_code_required", ["email_code"])
    assert count(User) == 0


def test_register_refuses_wrong_email_code_and_counts_the_try(client, factory, smtp_sink, run_jobs):
    email = "wrongcode@example.test"
    code = factory.email_code(client, smtp_sink, run_jobs, email, "register")

    response = register(client, email, email_code=wrong_code(code))

    assert_error(response, 422, "email_code_invalid", ["email_code"])
    assert count(User) == 0
    entry = db.session.scalar(select(EmailCode))
    assert (entry.attempts, entry.closed_at) == (1, None)
    # One wrong try does not kill the code.
    assert register(client, email, email_code=code).status_code == 201


def test_register_email_code_is_consumed_once(client, factory, smtp_sink, run_jobs):
    email = "once@example.test"
    code = factory.email_code(client, smtp_sink, run_jobs, email, "register")
    assert register(client, email, email_code=code).status_code == 201
    fresh()
    assert db.session.scalar(select(EmailCode)).closed_at is not None

    # Take the account away so that only the code stands between a second sign-up and success.
    db.session.execute(delete(User).where(User.email_key == email))
    db.session.commit()
    response = register(client, email, email_code=code)

    assert_error(response, 422, "email_code_invalid", ["email_code"])
    assert count(User) == 0


def test_register_without_code_when_broker_turns_requirement_off(client, factory):
    config = set_register_code_required(client, factory, False)
    assert config["email_code_required"]["register"] is False
    # Only the scene that was sent changes.
    assert config["email_code_required"]["password_change"] is True

    response = register(client, "free@example.test")

    assert response.status_code == 201, response.get_json()
    assert user_by_email("free@example.test") is not None


def test_register_code_required_again_when_broker_turns_it_back_on(client, factory):
    set_register_code_required(client, factory, False)
    set_register_code_required(client, factory, True)

    assert_error(register(client, "again@example.test"), 422, "email_code_required", ["email_code"])
    assert user_by_email("again@example.test") is None


def test_register_with_invite_code_attaches_client_under_ib_chain(client, factory, smtp_sink, run_jobs):
    top = factory.ib()
    sub = factory.ib(parent=top)
    top_id, sub_id, invite = top.id, sub.id, sub.referral_code
    email = "invited@example.test"
    code = factory.email_code(client, smtp_sink, run_jobs, email, "register")

    # Referral codes are case-insensitive (people type them from a flyer).
    response = register(client, email, email_code=code, invite_code=invite.lower())

    assert response.status_code == 201, response.get_json()
    user = user_by_email(email)
    assert user.parent_ib_id == sub_id
    paths = {
        (p.ancestor_id, p.depth)
        for p in db.session.scalars(select(IbTreePath).where(IbTreePath.descendant_id == user.id))
    }
    assert paths == {(user.id, 0), (sub_id, 1), (top_id, 2)}
    audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "auth.register"))
    assert audit.details == {"parent_ib_id": sub_id}


@pytest.mark.parametrize("kind", ["unknown", "disabled_ib"])
def test_register_with_invalid_invite_code_is_refused_and_creates_nothing(client, factory, smtp_sink, run_jobs, kind):
    invite = "NOSUCH01" if kind == "unknown" else factory.ib(status="disabled").referral_code
    users_before = count(User)
    email = "badinvite@example.test"
    code = factory.email_code(client, smtp_sink, run_jobs, email, "register")

    response = register(client, email, email_code=code, invite_code=invite)

    assert_error(response, 422, "invalid_invite_code", ["invite_code"])
    assert count(User) == users_before
    assert user_by_email(email) is None
    # Not silently ignored, and not half done: the code is still good for a clean retry.
    assert count(EmailCode, EmailCode.closed_at.is_(None)) == 1
    assert register(client, email, email_code=code).status_code == 201


def test_register_rejects_missing_fields(client, factory):
    body = assert_error(client.post(REGISTER, json={}), 422, "validation_error", ["email", "password"])
    assert body["errors"]["email"] == ["Missing data for required field."]
    assert count(User) == 0


@pytest.mark.parametrize(
    "payload, bad_field",
    [
        ({"email": 12345, "password": PASSWORD}, "email"),
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "types@example.test", "password": ["x"]}, "password"),
        ({"email": "types@example.test", "password": "a1" * 65}, "password"),
        ({"email": "types@example.test", "password": PASSWORD, "email_code": 123456}, "email_code"),
        ({"email": "types@example.test", "password": PASSWORD, "invite_code": None}, "invite_code"),
    ],
    ids=["email_int", "email_malformed", "password_list", "password_too_long", "code_int", "invite_null"],
)
def test_register_rejects_wrong_types(client, factory, payload, bad_field):
    assert_error(client.post(REGISTER, json=payload), 422, "validation_error", [bad_field])
    assert count(User) == 0


def test_register_rejects_unknown_field_such_as_user_type(client, factory):
    response = register(client, "sneaky@example.test", user_type="admin", email_code="000000")

    body = assert_error(response, 422, "validation_error", ["user_type"])
    assert body["errors"]["user_type"] == ["Unknown field."]
    assert count(User) == 0


def test_register_with_invalid_json_is_400(client, factory):
    response = client.post(REGISTER, data='{"email": "x@example.test", ', content_type="application/json")

    assert_error(response, 400, "bad_request")
    assert count(User) == 0


# -- login (#2) --------------------------------------------------------------------


def test_login_answers_tokens_and_stores_argon2id_hash(client, factory):
    user = factory.user(email="Login@Example.test")
    assert user.password_hash.startswith("$argon2id$")

    # Any case of the address signs in.
    response = login(client, "login@example.TEST", headers={"User-Agent": "pytest-agent/1.0"})

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"token", "refresh_token", "user_info"}
    assert body["user_info"]["email"] == "Login@Example.test"
    assert body["user_info"]["user_type"] == "client"
    assert client.get(PROBE, headers=bearer(body["token"])).status_code == 200
    session = db.session.scalar(select(AuthSession))
    assert (session.user_id, session.ip, session.user_agent) == (user.id, "127.0.0.1", "pytest-agent/1.0")
    assert user_by_email("login@example.test").last_login_at is not None


def test_login_wrong_password_and_unknown_email_answer_the_same_401(client, factory):
    factory.user(email="known@example.test")

    wrong_password = assert_error(login(client, "known@example.test", "Wr0ngPassword"), 401, "invalid_credentials")
    unknown_email = assert_error(login(client, "nobody@example.test"), 401, "invalid_credentials")

    assert wrong_password == unknown_email
    assert count(AuthSession) == 0


def test_login_validates_body(client, factory):
    assert_error(client.post(LOGIN, json={}), 422, "validation_error", ["email", "password"])
    assert_error(
        client.post(LOGIN, json={"email": "a@example.test", "password": PASSWORD, "remember": True}),
        422,
        "validation_error",
        ["remember"],
    )
    assert_error(client.post(LOGIN, json={"email": "a@example.test", "password": ""}), 422, "validation_error")
    assert_error(client.post(LOGIN, data="{nope", content_type="application/json"), 400, "bad_request")
    assert count(AuthSession) == 0


def test_disabled_user_gets_403_and_its_tokens_stop_working(client, factory):
    user = factory.user()
    tokens = factory.login(client, user.email)
    admin_headers = factory.headers(client, factory.admin())

    response = client.patch(f"/api/v1/admin/users/{user.id}", json={"status": "disabled"}, headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "disabled"

    assert client.get(PROBE, headers=bearer(tokens["token"])).status_code in (401, 403)
    assert client.post(REFRESH, headers=bearer(tokens["refresh_token"])).status_code in (401, 403)
    assert_error(login(client, user.email), 403, "user_disabled")
    assert count(AuthSession, AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None)) == 0


def test_login_throttled_per_email_after_max_failures(client, factory, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    user = factory.user()
    other = factory.user()

    for _ in range(3):
        assert_error(login(client, user.email, "Wr0ngPassword"), 401, "invalid_credentials")
    # Even the right password is refused now.
    response = login(client, user.email.upper())

    assert_error(response, 429, "too_many_requests")
    assert 1 <= int(response.headers["Retry-After"]) <= app.config["LOGIN_FAILURE_WINDOW_SECONDS"]
    assert count(AuthSession, AuthSession.user_id == user.id) == 0
    # Another account from the same place is not locked out by this one.
    assert login(client, other.email).status_code == 200


def test_login_throttled_per_ip_across_different_emails(client, factory, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_IP", 3)
    user = factory.user()

    for n in range(3):
        assert_error(login(client, f"guess{n}@example.test", "Wr0ngPassword"), 401, "invalid_credentials")
    response = login(client, user.email)

    assert_error(response, 429, "too_many_requests")
    assert int(response.headers["Retry-After"]) >= 1
    assert count(AuthSession) == 0
    # Another address is not blocked by this one's guesses.
    assert login(client, user.email, environ_base={"REMOTE_ADDR": "198.51.100.20"}).status_code == 200


def test_successful_login_resets_the_per_email_failure_counter(client, factory, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    user = factory.user()

    for _ in range(2):
        assert login(client, user.email, "Wr0ngPassword").status_code == 401
    assert login(client, user.email).status_code == 200
    for _ in range(2):
        assert_error(login(client, user.email, "Wr0ngPassword"), 401, "invalid_credentials")

    assert login(client, user.email).status_code == 200


# -- tokens ------------------------------------------------------------------------


def test_refresh_token_gives_a_working_access_token(client, factory):
    user = factory.user()
    tokens = factory.login(client, user.email)

    response = client.post(REFRESH, headers=bearer(tokens["refresh_token"]))

    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == {"token"}
    new_token = response.get_json()["token"]
    assert client.get(PROBE, headers=bearer(new_token)).status_code == 200
    # Same sign-in: no new session row.
    assert count(AuthSession) == 1


def test_access_token_is_refused_at_refresh_and_refresh_token_at_routes(client, factory):
    tokens = factory.login(client, factory.user().email)

    assert_error(client.post(REFRESH, headers=bearer(tokens["token"])), 401, "token_invalid")
    assert_error(client.get(PROBE, headers=bearer(tokens["refresh_token"])), 401, "token_invalid")
    assert_error(client.post(REFRESH), 401, "unauthorized")


def test_logout_revokes_that_sign_in_only(client, factory):
    user = factory.user()
    first = factory.login(client, user.email)
    second = factory.login(client, user.email)

    response = client.post(LOGOUT, headers=bearer(first["token"]))

    assert response.status_code == 204
    assert response.data == b""
    assert_error(client.get(PROBE, headers=bearer(first["token"])), 401, "token_revoked")
    assert_error(client.post(REFRESH, headers=bearer(first["refresh_token"])), 401, "token_revoked")
    assert client.get(PROBE, headers=bearer(second["token"])).status_code == 200
    assert client.post(REFRESH, headers=bearer(second["refresh_token"])).status_code == 200
    assert count(AuthSession, AuthSession.revoked_at.is_not(None)) == 1
    assert count(AuthSession, AuthSession.revoked_at.is_(None)) == 1


def test_password_change_revokes_every_earlier_token_and_switches_password(client, factory, smtp_sink, run_jobs):
    user = factory.user()
    first = factory.login(client, user.email)
    second = factory.login(client, user.email)
    code = factory.email_code(client, smtp_sink, run_jobs, user.email, "password_change")

    response = client.post(
        PASSWORD_CHANGE,
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD, "email_code": code},
        headers=bearer(first["token"]),
    )

    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {}
    for tokens in (first, second):
        assert client.get(PROBE, headers=bearer(tokens["token"])).status_code == 401
        assert client.post(REFRESH, headers=bearer(tokens["refresh_token"])).status_code == 401
    assert_error(login(client, user.email), 401, "invalid_credentials")
    fresh_login = login(client, user.email, NEW_PASSWORD)
    assert fresh_login.status_code == 200
    assert client.get(PROBE, headers=bearer(fresh_login.get_json()["token"])).status_code == 200
    assert user_by_email(user.email).password_hash.startswith("$argon2id$")
    assert count(EmailCode, EmailCode.closed_at.is_(None)) == 0


def test_password_change_with_wrong_old_password_changes_nothing(client, factory, smtp_sink, run_jobs):
    user = factory.user()
    tokens = factory.login(client, user.email)
    code = factory.email_code(client, smtp_sink, run_jobs, user.email, "password_change")
    hash_before = user_by_email(user.email).password_hash

    response = client.post(
        PASSWORD_CHANGE,
        json={"old_password": "Wr0ngPassword", "new_password": NEW_PASSWORD, "email_code": code},
        headers=bearer(tokens["token"]),
    )

    assert_error(response, 422, "wrong_old_password", ["old_password"])
    assert user_by_email(user.email).password_hash == hash_before
    assert client.get(PROBE, headers=bearer(tokens["token"])).status_code == 200
    assert count(EmailCode, EmailCode.closed_at.is_(None)) == 1
    assert login(client, user.email).status_code == 200


def test_password_change_requires_email_code_and_policy(client, factory, smtp_sink, run_jobs):
    user = factory.user()
    tokens = factory.login(client, user.email)
    headers = bearer(tokens["token"])

    no_code = client.post(
        PASSWORD_CHANGE, json={"old_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=headers
    )
    assert_error(no_code, 422, "email_code_required", ["email_code"])

    code = factory.email_code(client, smtp_sink, run_jobs, user.email, "password_change")
    weak = client.post(
        PASSWORD_CHANGE,
        json={"old_password": PASSWORD, "new_password": "qwertyuiop", "email_code": code},
        headers=headers,
    )
    assert_error(weak, 422, "password_common", ["new_password"])

    same = client.post(
        PASSWORD_CHANGE,
        json={"old_password": PASSWORD, "new_password": PASSWORD, "email_code": code},
        headers=headers,
    )
    assert_error(same, 422, "password_reused", ["new_password"])

    unknown_field = client.post(
        PASSWORD_CHANGE,
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD, "email_code": code, "user_id": 1},
        headers=headers,
    )
    assert_error(unknown_field, 422, "validation_error", ["user_id"])

    # Nothing changed: old password, token and code all still good.
    assert client.get(PROBE, headers=headers).status_code == 200
    assert count(EmailCode, EmailCode.closed_at.is_(None)) == 1
    assert login(client, user.email).status_code == 200


def test_password_change_email_code_is_consumed_once(client, factory, smtp_sink, run_jobs):
    user = factory.user()
    code = factory.email_code(client, smtp_sink, run_jobs, user.email, "password_change")
    first = client.post(
        PASSWORD_CHANGE,
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD, "email_code": code},
        headers=factory.headers(client, user),
    )
    assert first.status_code == 200, first.get_json()

    second = client.post(
        PASSWORD_CHANGE,
        json={"old_password": NEW_PASSWORD, "new_password": "Third-Secret-Falcon-9", "email_code": code},
        headers=factory.headers(client, user, password=NEW_PASSWORD),
    )

    assert_error(second, 422, "email_code_invalid", ["email_code"])
    assert login(client, user.email, NEW_PASSWORD).status_code == 200


def test_password_change_needs_a_token(client, factory):
    response = client.post(PASSWORD_CHANGE, json={"old_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert_error(response, 401, "unauthorized")


def test_expired_access_token_is_401_token_expired(client, factory, app, monkeypatch):
    user = factory.user()
    monkeypatch.setitem(app.config, "JWT_ACCESS_TOKEN_EXPIRES", timedelta(seconds=-1))
    tokens = factory.login(client, user.email)

    assert_error(client.get(PROBE, headers=bearer(tokens["token"])), 401, "token_expired")


def test_access_token_created_already_expired_is_401_token_expired(client, factory):
    from flask_jwt_extended import create_access_token

    user = factory.user()
    claims = pyjwt.decode(factory.login(client, user.email)["token"], options={"verify_signature": False})
    expired = create_access_token(
        identity=str(user.id),
        additional_claims={k: claims[k] for k in ("sid", "ver", "utype")},
        expires_delta=timedelta(seconds=-5),
    )

    assert_error(client.get(PROBE, headers=bearer(expired)), 401, "token_expired")


def test_tampered_token_is_401_token_invalid(client, factory):
    token = factory.login(client, factory.user().email)["token"]
    header, payload, signature = token.split(".")
    # A character in the middle of the signature: every one of its bits counts.
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    tampered = f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"

    assert_error(client.get(PROBE, headers=bearer(tampered)), 401, "token_invalid")


def test_token_with_edited_claims_is_401_token_invalid(client, factory):
    admin = factory.admin()
    client_token = factory.login(client, factory.user().email)["token"]
    header, payload, signature = client_token.split(".")
    claims = pyjwt.decode(client_token, options={"verify_signature": False})
    claims["sub"] = str(admin.id)
    forged_payload = pyjwt.encode(claims, "x" * 64, algorithm="HS256").split(".")[1]

    response = client.get("/api/v1/admin/users", headers=bearer(f"{header}.{forged_payload}.{signature}"))

    assert_error(response, 401, "token_invalid")


def test_missing_or_malformed_authorization_is_401(client, factory):
    assert_error(client.get(PROBE), 401, "unauthorized")
    assert_error(client.post(LOGOUT), 401, "unauthorized")
    assert_error(client.get(PROBE, headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "unauthorized")
    assert_error(client.get(PROBE, headers=bearer("not-a-jwt")), 401, "token_invalid")


def test_token_signed_with_another_key_is_401(client, factory):
    token = factory.login(client, factory.user().email)["token"]
    claims = pyjwt.decode(token, options={"verify_signature": False})
    foreign = pyjwt.encode(claims, "another-signing-key-that-is-long-enough-for-hs256", algorithm="HS256")
    unsigned = pyjwt.encode(claims, None, algorithm="none")

    assert_error(client.get(PROBE, headers=bearer(foreign)), 401, "token_invalid")
    assert_error(client.get(PROBE, headers=bearer(unsigned)), 401, "token_invalid")


@pytest.mark.parametrize("user_type", ["client", "ib"])
def test_non_admin_calling_admin_route_is_403_forbidden(client, factory, user_type):
    user = factory.user(user_type)

    response = client.get("/api/v1/admin/users", headers=factory.headers(client, user))

    assert_error(response, 403, "forbidden")


def test_client_cannot_disable_another_user(client, factory):
    victim = factory.user()
    response = client.patch(
        f"/api/v1/admin/users/{victim.id}", json={"status": "disabled"}, headers=factory.headers(client, factory.user())
    )

    assert_error(response, 403, "forbidden")
    assert user_by_email(victim.email).status == "enabled"


@pytest.mark.parametrize(
    "accept_language, message, required",
    [
        (None, "Wrong email or password.", "Missing data for required field."),
        ("en-US,en;q=0.9", "Wrong email or password.", "Missing data for required field."),
        ("zh-CN", "邮箱或密码错误。", "缺少必填字段。"),
        ("zh-TW", "電子郵件或密碼錯誤。", "缺少必填欄位。"),
        ("zh-Hant-HK,zh;q=0.8", "電子郵件或密碼錯誤。", "缺少必填欄位。"),
        ("fr-FR,zh-CN;q=0.5", "邮箱或密码错误。", "缺少必填字段。"),
    ],
    ids=["none", "en", "zh-CN", "zh-TW", "zh-Hant-HK", "fr_then_zh-CN"],
)
def test_error_messages_follow_accept_language(client, factory, accept_language, message, required):
    headers = {"Accept-Language": accept_language} if accept_language else {}

    wrong = assert_error(login(client, "nobody@example.test", headers=headers), 401, "invalid_credentials")
    missing = assert_error(client.post(REGISTER, json={}, headers=headers), 422, "validation_error", ["email"])

    assert wrong["message"] == message
    assert missing["errors"]["email"] == [required]


def test_accept_language_quality_values_are_honoured(client, factory):
    response = login(client, "nobody@example.test", headers={"Accept-Language": "en;q=0.1, zh-TW;q=0.9"})

    assert assert_error(response, 401, "invalid_credentials")["message"] == "電子郵件或密碼錯誤。"


def test_auth_events_are_audited_with_ip_and_user_agent(client, factory, smtp_sink, run_jobs):
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    client.environ_base["HTTP_USER_AGENT"] = "AuditAgent/2.0"
    email = "audited@example.test"
    code = factory.email_code(client, smtp_sink, run_jobs, email, "register")
    assert register(client, email, email_code=code).status_code == 201
    assert login(client, email, "Wr0ngPassword").status_code == 401
    assert login(client, "ghost@example.test").status_code == 401
    tokens = factory.login(client, email)
    assert client.post(LOGOUT, headers=bearer(tokens["token"])).status_code == 204
    code = factory.email_code(client, smtp_sink, run_jobs, email, "password_change")
    changed = client.post(
        PASSWORD_CHANGE,
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD, "email_code": code},
        headers=factory.headers(client, user_by_email(email)),
    )
    assert changed.status_code == 200, changed.get_json()

    user_id = user_by_email(email).id
    rows = db.session.scalars(select(AuditLog).where(AuditLog.action.like("auth.%")).order_by(AuditLog.id)).all()
    by_action = {}
    for row in rows:
        by_action.setdefault(row.action, []).append(row)
    for action in ("auth.register", "auth.login", "auth.login_failed", "auth.logout", "auth.password_change"):
        assert action in by_action, sorted(by_action)
        for row in by_action[action]:
            assert (row.ip, row.user_agent) == ("203.0.113.9", "AuditAgent/2.0"), action
    assert by_action["auth.register"][0].actor_id == user_id
    assert by_action["auth.password_change"][0].actor_id == user_id
    failed = {(row.actor_id, row.details["email"]) for row in by_action["auth.login_failed"]}
    assert failed == {(user_id, email), (None, "ghost@example.test")}

    # The back office sees the same trail.
    listing = client.get(
        "/api/v1/admin/audit-logs?action=auth.&size=200", headers=factory.headers(client, factory.admin())
    )
    assert listing.status_code == 200, listing.get_json()
    listed = {entry["action"] for entry in listing.get_json()["list"]}
    assert {"auth.register", "auth.login", "auth.login_failed", "auth.logout", "auth.password_change"} <= listed
