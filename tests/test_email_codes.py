"""Email codes (#6 POST /api/v1/auth/email-code): delivery over real SMTP by a real
RQ worker, storage, resend delay, expiry, wrong tries, clock skew, no enumeration."""

import hashlib
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from crm_app.auth.models import EmailCode, User
from crm_app.common.timeutil import to_unix, utcnow
from crm_app.extensions import db
from tests.support.factory import PASSWORD

EMAIL_CODE = "/api/v1/auth/email-code"
REGISTER = "/api/v1/auth/register"
NOW = object()  # stands for the current Unix time in parametrized bodies


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


def fresh():
    db.session.rollback()


def count(model, *where):
    fresh()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def codes_for(email):
    fresh()
    return db.session.scalars(select(EmailCode).where(EmailCode.email_key == email.casefold())).all()


def ask(client, email, scene="register", received_at=None, headers=None):
    received_at = int(time.time()) if received_at is None else received_at
    return client.post(EMAIL_CODE, json={"email": email, "scene": scene, "received_at": received_at}, headers=headers)


def mails_to(smtp_sink, address):
    return [m["message"] for m in smtp_sink.messages if address.lower() in [t.lower() for t in m["to"]]]


def code_in(text):
    found = re.findall(r"\b\d{6}\b", text)
    assert len(found) == 1, text
    return found[0]


def latest_code(smtp_sink, address):
    texts = smtp_sink.texts_to(address)
    assert texts, f"no mail to {address}"
    return code_in(texts[-1])


def queued_jobs():
    from workers import get_queue

    return get_queue("default").jobs


def register(client, email, code):
    return client.post(REGISTER, json={"email": email, "password": PASSWORD, "email_code": code})


def wrong_code(code):
    return f"{(int(code) + 1) % 10**6:06d}"


# -- the answer ------------------------------------------------------------------


def test_answer_gives_resend_and_expiry_times_from_config(client, ctx, app, monkeypatch):
    monkeypatch.setitem(app.config, "EMAIL_CODE_TTL_SECONDS", 900)
    monkeypatch.setitem(app.config, "EMAIL_CODE_RESEND_SECONDS", 45)
    before = int(time.time())

    response = ask(client, "times@example.test")

    after = int(time.time()) + 1
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"can_resend_at", "expired_at"}
    assert before + 45 <= body["can_resend_at"] <= after + 45
    assert before + 900 <= body["expired_at"] <= after + 900
    [entry] = codes_for("times@example.test")
    assert (to_unix(entry.resend_at), to_unix(entry.expires_at)) == (body["can_resend_at"], body["expired_at"])
    assert (entry.scene, entry.attempts, entry.closed_at) == ("register", 0, None)


def test_mail_arrives_over_smtp_with_a_six_digit_code(client, ctx, smtp_sink, run_jobs):
    assert ask(client, "Mailed@Example.test").status_code == 200
    # Sent by the worker, not inside the request.
    assert smtp_sink.messages == []

    run_jobs()

    [message] = mails_to(smtp_sink, "mailed@example.test")
    assert message["From"] == "no-reply@broker.test"
    assert message["To"] == "Mailed@Example.test"
    assert message["Subject"] == "Your verification code"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert re.fullmatch(r"\d{6}", code_in(text))
    assert "registration" in text
    assert "10 minutes" in text  # EMAIL_CODE_TTL_SECONDS defaults to 600


@pytest.mark.parametrize(
    "accept_language, subject, words",
    [
        ("en-GB,en;q=0.9", "Your verification code", ["verification code for registration", "expires in"]),
        ("zh-CN,zh;q=0.9", "您的验证码", ["您的注册验证码是", "分钟后失效"]),
        ("zh-TW", "您的驗證碼", ["您的註冊驗證碼是", "分鐘後失效"]),
    ],
    ids=["en", "zh-CN", "zh-TW"],
)
def test_mail_language_follows_accept_language(client, ctx, smtp_sink, run_jobs, accept_language, subject, words):
    email = "polyglot@example.test"
    assert ask(client, email, headers={"Accept-Language": accept_language}).status_code == 200

    run_jobs()

    [message] = mails_to(smtp_sink, email)
    assert message["Subject"] == subject
    text = message.get_body(preferencelist=("plain",)).get_content()
    for word in words:
        assert word in text, text
    code_in(text)


def test_mail_names_the_scene_in_the_language(client, factory, smtp_sink, run_jobs):
    user = factory.user()
    assert ask(client, user.email, scene="password_change", headers={"Accept-Language": "zh-TW"}).status_code == 200
    run_jobs()

    [message] = mails_to(smtp_sink, user.email)
    assert "修改密碼" in message.get_body(preferencelist=("plain",)).get_content()


def test_code_is_stored_hashed(client, ctx, smtp_sink, run_jobs):
    email = "hashed@example.test"
    assert ask(client, email).status_code == 200
    run_jobs()
    code = latest_code(smtp_sink, email)

    [entry] = codes_for(email)
    assert code not in entry.code_hash
    assert len(entry.code_hash) == 64
    # Not a plain digest either: 10**6 of those are a lookup table.
    assert entry.code_hash != hashlib.sha256(code.encode()).hexdigest()
    assert entry.code_hash != hashlib.sha256(f"{email}|register|{code}".encode()).hexdigest()


def test_rq_job_description_does_not_contain_the_code(client, ctx, smtp_sink, run_jobs):
    from crm_app.common.runtime import runtime

    email = "jobs@example.test"
    assert ask(client, email).status_code == 200
    [job] = queued_jobs()
    description = job.description
    stored_description = runtime().redis.hget(job.key, "description").decode()

    run_jobs()
    code = latest_code(smtp_sink, email)

    assert description == stored_description
    assert code not in description
    assert "register" in description
    # result_ttl=0: once delivered, the job (and the code in its arguments) is gone from Redis.
    assert not runtime().redis.exists(job.key)


# -- resend delay --------------------------------------------------------------------


def test_asking_again_before_can_resend_at_is_429(client, ctx, smtp_sink, run_jobs):
    email = "impatient@example.test"
    first = ask(client, email)
    assert first.status_code == 200

    again = ask(client, email)

    assert_error(again, 429, "email_code_too_soon")
    retry_after = int(again.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert retry_after <= first.get_json()["can_resend_at"] - int(time.time()) + 1
    assert len(codes_for(email)) == 1
    assert len(queued_jobs()) == 1
    run_jobs()
    assert len(mails_to(smtp_sink, email)) == 1
    # The first code is untouched by the refused request.
    assert register(client, email, latest_code(smtp_sink, email)).status_code == 201


def test_resend_delay_is_per_email_and_scene(client, factory, smtp_sink, run_jobs):
    user = factory.user()
    assert ask(client, user.email, scene="withdrawal").status_code == 200

    assert ask(client, user.email, scene="transfer").status_code == 200
    assert ask(client, "someone.else@example.test").status_code == 200


def test_new_code_after_resend_delay_replaces_the_old_one(client, ctx, app, monkeypatch, smtp_sink, run_jobs):
    monkeypatch.setitem(app.config, "EMAIL_CODE_RESEND_SECONDS", 0)
    email = "resend@example.test"
    assert ask(client, email).status_code == 200
    run_jobs()
    old = latest_code(smtp_sink, email)
    new = old
    while new == old:  # two draws of six random digits can (rarely) agree
        assert ask(client, email).status_code == 200
        run_jobs()
        new = latest_code(smtp_sink, email)

    assert_error(register(client, email, old), 422, "email_code_invalid", ["email_code"])
    assert count(User) == 0
    assert register(client, email, new).status_code == 201
    # Every code but the one used is closed; only one was ever open at a time.
    assert all(entry.closed_at is not None for entry in codes_for(email))


def test_code_killed_by_wrong_tries_does_not_lift_the_resend_delay(client, ctx, app, monkeypatch):
    monkeypatch.setitem(app.config, "EMAIL_CODE_MAX_ATTEMPTS", 2)
    email = "bruteforce@example.test"
    first = ask(client, email)
    assert first.status_code == 200
    for guess in ("000000", "000001"):
        register(client, email, guess)
    assert int(time.time()) < first.get_json()["can_resend_at"]

    # Asking before the promised can_resend_at must be a 429, whatever became of the old code.
    assert_error(ask(client, email), 429, "email_code_too_soon")


# -- expiry and wrong tries ----------------------------------------------------------


def test_expired_code_is_refused(client, ctx, smtp_sink, run_jobs):
    email = "late@example.test"
    assert ask(client, email).status_code == 200
    run_jobs()
    code = latest_code(smtp_sink, email)
    db.session.execute(update(EmailCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    assert_error(register(client, email, code), 422, "email_code_invalid", ["email_code"])
    assert count(User) == 0


def test_code_expires_after_ttl_seconds(client, ctx, app, monkeypatch, smtp_sink, run_jobs):
    monkeypatch.setitem(app.config, "EMAIL_CODE_TTL_SECONDS", 1)
    email = "ttl@example.test"
    response = ask(client, email)
    assert response.get_json()["expired_at"] <= int(time.time()) + 1
    run_jobs()
    code = latest_code(smtp_sink, email)

    time.sleep(1.2)

    assert_error(register(client, email, code), 422, "email_code_invalid", ["email_code"])
    assert count(User) == 0


def test_max_attempts_wrong_tries_kill_the_code(client, ctx, app, monkeypatch, smtp_sink, run_jobs):
    monkeypatch.setitem(app.config, "EMAIL_CODE_MAX_ATTEMPTS", 3)
    email = "guesser@example.test"
    assert ask(client, email).status_code == 200
    run_jobs()
    code = latest_code(smtp_sink, email)

    for _ in range(3):
        assert_error(register(client, email, wrong_code(code)), 422, "email_code_invalid", ["email_code"])
    response = register(client, email, code)

    assert_error(response, 422, "email_code_invalid", ["email_code"])
    assert count(User) == 0
    [entry] = codes_for(email)
    assert entry.attempts == 3
    assert entry.closed_at is not None


def test_fewer_wrong_tries_than_the_limit_leave_the_code_usable(client, ctx, app, monkeypatch, smtp_sink, run_jobs):
    monkeypatch.setitem(app.config, "EMAIL_CODE_MAX_ATTEMPTS", 3)
    email = "almost@example.test"
    assert ask(client, email).status_code == 200
    run_jobs()
    code = latest_code(smtp_sink, email)

    for _ in range(2):
        assert register(client, email, wrong_code(code)).status_code == 422

    assert register(client, email, code).status_code == 201


def test_code_works_only_for_its_own_email_and_scene(client, factory, smtp_sink, run_jobs):
    user = factory.user()
    withdrawal_code = factory.email_code(client, smtp_sink, run_jobs, user.email, "withdrawal")
    other_code = factory.email_code(client, smtp_sink, run_jobs, "first@example.test", "register")

    change = client.post(
        "/api/v1/auth/password",
        json={"old_password": PASSWORD, "new_password": "New-Secret-Pine-99", "email_code": withdrawal_code},
        headers=factory.headers(client, user),
    )
    assert_error(change, 422, "email_code_invalid", ["email_code"])
    assert_error(register(client, "second@example.test", other_code), 422, "email_code_invalid", ["email_code"])

    assert count(User) == 1
    assert count(EmailCode, EmailCode.closed_at.is_(None)) == 2


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [400, -400, None], ids=["ahead", "behind", "milliseconds"])
def test_received_at_far_from_server_time_is_422_clock_skew(client, ctx, smtp_sink, run_jobs, offset):
    now = int(time.time())
    received_at = now * 1000 if offset is None else now + offset

    response = ask(client, "skewed@example.test", received_at=received_at)

    assert_error(response, 422, "clock_skew", ["received_at"])
    assert count(EmailCode) == 0
    assert queued_jobs() == []
    run_jobs()
    assert smtp_sink.messages == []


def test_received_at_within_allowed_skew_is_accepted(client, ctx):
    assert ask(client, "slowclock@example.test", received_at=int(time.time()) - 200).status_code == 200


@pytest.mark.parametrize(
    "payload, bad_field",
    [
        ({"email": "a@example.test", "scene": "login", "received_at": NOW}, "scene"),
        ({"email": "a@example.test", "scene": "REGISTER", "received_at": NOW}, "scene"),
        ({"email": "a@example.test", "received_at": NOW}, "scene"),
        ({"scene": "register", "received_at": NOW}, "email"),
        ({"email": "a@example.test", "scene": "register"}, "received_at"),
        ({"email": "nope", "scene": "register", "received_at": NOW}, "email"),
        ({"email": "a@example.test", "scene": "register", "received_at": "yesterday"}, "received_at"),
        ({"email": "a@example.test", "scene": "register", "received_at": NOW, "code": "123456"}, "code"),
    ],
    ids=[
        "unknown_scene",
        "scene_case",
        "no_scene",
        "no_email",
        "no_received_at",
        "bad_email",
        "received_at_str",
        "extra",
    ],
)
def test_bad_email_code_request_is_422_and_stores_nothing(client, ctx, payload, bad_field):
    payload = {key: int(time.time()) if value is NOW else value for key, value in payload.items()}

    response = client.post(EMAIL_CODE, json=payload)

    assert_error(response, 422, "validation_error", [bad_field])
    assert count(EmailCode) == 0
    assert queued_jobs() == []


def test_invalid_json_is_400(client, ctx):
    response = client.post(EMAIL_CODE, data='{"email": ', content_type="application/json")

    assert_error(response, 400, "bad_request")
    assert count(EmailCode) == 0


def test_requests_per_ip_are_capped(client, ctx, app, monkeypatch):
    monkeypatch.setitem(app.config, "EMAIL_CODE_MAX_PER_IP_HOUR", 2)
    assert ask(client, "one@example.test").status_code == 200
    assert ask(client, "two@example.test").status_code == 200

    response = ask(client, "three@example.test")

    assert_error(response, 429, "too_many_requests")
    assert int(response.headers["Retry-After"]) >= 1
    assert codes_for("three@example.test") == []


# -- no enumeration ----------------------------------------------------------------------


def test_register_code_for_registered_email_is_not_mailed_but_answers_the_same(client, factory, smtp_sink, run_jobs):
    user = factory.user(email="exists@example.test")

    known = ask(client, user.email)
    unknown = ask(client, "fresh@example.test")

    assert known.status_code == unknown.status_code == 200
    assert set(known.get_json()) == set(unknown.get_json())
    assert known.headers.get("Content-Type") == unknown.headers.get("Content-Type")
    for body in (known.get_json(), unknown.get_json()):
        assert body["expired_at"] - body["can_resend_at"] == 600 - 60
    # Asking again is refused the same way for both, too.
    assert_error(ask(client, user.email), 429, "email_code_too_soon")
    assert_error(ask(client, "fresh@example.test"), 429, "email_code_too_soon")
    run_jobs()
    assert mails_to(smtp_sink, user.email) == []
    assert len(mails_to(smtp_sink, "fresh@example.test")) == 1


def test_withdrawal_code_for_unknown_email_is_not_mailed(client, factory, smtp_sink, run_jobs):
    user = factory.user()

    unknown = ask(client, "ghost@example.test", scene="withdrawal")
    known = ask(client, user.email, scene="withdrawal")

    assert unknown.status_code == known.status_code == 200
    assert set(unknown.get_json()) == set(known.get_json())
    assert len(queued_jobs()) == 1
    run_jobs()
    assert mails_to(smtp_sink, "ghost@example.test") == []
    assert len(mails_to(smtp_sink, user.email)) == 1
