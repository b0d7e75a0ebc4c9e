"""#6 `POST /api/v1/auth/email-code` with the seed's body, where `email` is optional: a
signed-in caller's `withdrawal`, `transfer` and `password_change` codes go to their own
address; another address is refused; without a token (and for `register`) `email` is still
needed, and anonymous callers keep the no-enumeration answer."""

import re
import time

import pytest
from sqlalchemy import func, select

from crm_app.auth.models import EmailCode
from crm_app.extensions import db
from tests.support.factory import PASSWORD

EMAIL_CODE = "/api/v1/auth/email-code"
OWN_SCENES = ("withdrawal", "transfer", "password_change")


def seed_body(scene, **extra):
    """The seed's #6 body (`email`, `received_at`, `scene`) without its optional `email`."""
    return {"received_at": int(time.time()), "scene": scene, **extra}


def stored_codes():
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(EmailCode))


def assert_error(response, status, code, field=None):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"code", "status", "message", "errors"}, body
    assert body["code"] == code, body
    if field:
        assert field in body["errors"], body
    return body


@pytest.fixture
def caller(client, factory):
    user = factory.user(email="Caller.Person@example.test")
    return user, factory.headers(client, user)


@pytest.mark.parametrize("scene", OWN_SCENES)
def test_signed_in_caller_leaving_email_out_gets_the_code_at_their_own_address(
    client, caller, smtp_sink, run_jobs, scene
):
    user, headers = caller
    response = client.post(EMAIL_CODE, json=seed_body(scene), headers=headers)
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == {"can_resend_at", "expired_at"}
    run_jobs()
    assert len(smtp_sink.texts_to(user.email)) == 1


@pytest.mark.parametrize("own", ["Caller.Person@example.test", "caller.person@EXAMPLE.test", ""])
def test_signed_in_caller_may_name_their_own_address_or_send_it_blank(client, caller, smtp_sink, run_jobs, own):
    user, headers = caller
    response = client.post(EMAIL_CODE, json=seed_body("withdrawal", email=own), headers=headers)
    assert response.status_code == 200, response.get_json()
    run_jobs()
    assert len(smtp_sink.texts_to(user.email)) == 1


@pytest.mark.parametrize("scene", OWN_SCENES)
def test_signed_in_caller_naming_another_address_is_refused(client, factory, caller, smtp_sink, run_jobs, scene):
    _, headers = caller
    other = factory.user()
    response = client.post(EMAIL_CODE, json=seed_body(scene, email=other.email), headers=headers)
    body = assert_error(response, 422, "email_not_yours", "email")
    assert body["errors"]["email"] == ["Must be your own address, or left out to use it."]
    assert stored_codes() == 0
    run_jobs()
    assert smtp_sink.texts_to(other.email) == []


def test_the_code_sent_to_the_callers_address_changes_their_password(client, caller, smtp_sink, run_jobs):
    user, headers = caller
    assert client.post(EMAIL_CODE, json=seed_body("password_change"), headers=headers).status_code == 200
    run_jobs()
    code = re.search(r"\b(\d{6})\b", smtp_sink.texts_to(user.email)[-1]).group(1)
    response = client.post(
        "/api/v1/auth/password",
        json={"old_password": PASSWORD, "new_password": "Velvet-Harbour-93-Orbit", "email_code": code},
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("scene", ("register", *OWN_SCENES))
def test_without_a_token_and_without_email_is_422_naming_email(client, ctx, scene):
    response = client.post(EMAIL_CODE, json=seed_body(scene))
    body = assert_error(response, 422, "validation_error", "email")
    assert body["errors"]["email"] == ["Missing data for required field."]
    assert stored_codes() == 0


def test_register_still_needs_email_when_signed_in(client, caller):
    _, headers = caller
    assert_error(client.post(EMAIL_CODE, json=seed_body("register"), headers=headers), 422, "validation_error", "email")
    assert stored_codes() == 0


def test_signed_in_register_code_for_another_address_answers_like_an_anonymous_one(client, caller, smtp_sink, run_jobs):
    _, headers = caller
    response = client.post(EMAIL_CODE, json=seed_body("register", email="newcomer@example.test"), headers=headers)
    assert response.status_code == 200, response.get_json()
    run_jobs()
    assert len(smtp_sink.texts_to("newcomer@example.test")) == 1


def test_anonymous_callers_keep_the_no_enumeration_answer(client, factory, smtp_sink, run_jobs):
    user = factory.user()
    known = client.post(EMAIL_CODE, json=seed_body("withdrawal", email=user.email))
    unknown = client.post(EMAIL_CODE, json=seed_body("withdrawal", email="ghost@example.test"))
    assert known.status_code == unknown.status_code == 200
    assert set(known.get_json()) == set(unknown.get_json())
    run_jobs()
    assert smtp_sink.texts_to("ghost@example.test") == []
    assert len(smtp_sink.texts_to(user.email)) == 1


@pytest.mark.parametrize("header", ["Bearer not.a.jwt", "Bearer"])
def test_a_bad_bearer_token_is_401_not_an_anonymous_request(client, ctx, header):
    response = client.post(EMAIL_CODE, json=seed_body("withdrawal"), headers={"Authorization": header})
    assert_error(response, 401, response.get_json()["code"])
    assert response.get_json()["code"] in ("unauthorized", "token_invalid")
    assert stored_codes() == 0


def test_another_authorization_scheme_is_left_to_whoever_sent_it(client, ctx):
    """A proxy's Basic auth in front of a staging site is no bearer token: anonymous."""
    response = client.post(
        EMAIL_CODE,
        json=seed_body("register", email="someone@example.test"),
        headers={"Authorization": "Basic dXNlcjpwYXNz"},
    )
    assert response.status_code == 200, response.get_json()


def test_the_openapi_document_makes_email_optional_and_the_bearer_token_optional(client):
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/api/v1/auth/email-code"]["post"]
    assert operation["security"] == [{"bearerAuth": []}, {}]
    assert "x-roles" not in operation
    assert {"401", "403", "422", "429"} <= set(operation["responses"])
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert "email" in schema["properties"]
    assert "email" not in schema.get("required", [])
    assert set(schema["required"]) == {"received_at", "scene"}
