"""Electronic identity verification (#17): sessions, the simulator vendor's page, and the
signed webhook that is the only way a result gets in."""

import json
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.integrations.everify import (
    InvalidSignature,
    MalformedCallback,
    SimulatorVendor,
    check_signature,
    sign,
)

URLS = {"success_url": "https://portal.example/kyc/ok", "failed_url": "https://portal.example/kyc/failed"}


@pytest.fixture(autouse=True)
def portal_origin(app, monkeypatch):
    """The broker's front end, where the vendor may send the person back to."""
    monkeypatch.setitem(app.config, "FRONTEND_ORIGINS", ("https://portal.example",))


@pytest.fixture
def kyc_form(factory):
    from crm_app.kyc.demo import seed_kyc_demo

    seed_kyc_demo()


@pytest.fixture
def user(factory, kyc_form):
    return factory.user()


@pytest.fixture
def auth(client, factory, user):
    return factory.headers(client, user)


def start(client, auth):
    response = client.post("/api/v1/client/kyc/e-verify/sessions", headers=auth, json=URLS)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def everify_state(client, auth):
    return client.get("/api/v1/client/kyc/form", headers=auth).get_json()["e_verify"]


def sim_vendor(app):
    from crm_app.integrations.everify import EVerifySettings

    with app.app_context():
        settings = EVerifySettings.from_config(app.config)
    return SimulatorVendor(settings.sim_secret)


def post_webhook(client, body, headers, provider="sim"):
    return client.post(
        f"/api/v1/webhooks/e-verify/{provider}",
        data=body,
        headers={**headers, "Content-Type": "application/json"},
    )


# Through the simulator's page ---------------------------------------------------------------------


def test_session_then_simulator_page_then_pass(client, auth):
    session = start(client, auth)
    assert set(session) == {"expire_at", "redirect_url", "session_id"}
    assert session["redirect_url"] == f"/api/v1/e-verify/sim/{session['session_id']}"
    assert everify_state(client, auth)["status"] == "pending"

    page = client.get(session["redirect_url"])
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'value="pass"' in html and 'value="fail"' in html and session["session_id"] in html

    decided = client.post(f"{session['redirect_url']}/decide", data={"outcome": "pass"})
    assert decided.status_code == 303
    assert decided.headers["Location"] == URLS["success_url"]

    state = everify_state(client, auth)
    assert state["status"] == "passed" and state["code"] == "0000"
    assert state["attempt_times"] == 1 and state["retry_times"] == 4
    kyc = client.get("/api/v1/client/kyc", headers=auth).get_json()
    result = kyc["kyc_data"]["e_verify"]
    assert result["status"] == "passed" and result["provider"] == "sim"
    assert result["session_id"] == session["session_id"] and result["reason_code"] == "0000"
    assert result["verified_at"] and result["reason_msg"]
    assert "e_verify" in kyc["completed_module"]

    again = client.post("/api/v1/client/kyc/e-verify/sessions", headers=auth, json=URLS)
    assert again.status_code == 409 and again.get_json()["code"] == "e_verify_already_passed"


def test_a_failed_check_can_be_retried(client, auth):
    first = start(client, auth)
    decided = client.post(f"{first['redirect_url']}/decide", data={"outcome": "fail"})
    assert decided.status_code == 303 and decided.headers["Location"] == URLS["failed_url"]
    state = everify_state(client, auth)
    assert state["status"] == "rejected" and state["code"] == "1001"
    kyc = client.get("/api/v1/client/kyc", headers=auth).get_json()
    assert kyc["kyc_data"]["e_verify"]["status"] == "rejected"
    assert "e_verify" not in kyc["completed_module"]

    second = start(client, auth)
    assert second["session_id"] != first["session_id"]
    client.post(f"{second['redirect_url']}/decide", data={"outcome": "pass"})
    assert everify_state(client, auth)["status"] == "passed"
    # The first session is closed: its page cannot change the outcome any more.
    late = client.post(f"{first['redirect_url']}/decide", data={"outcome": "pass"})
    assert late.status_code == 409 and late.get_json()["code"] == "e_verify_session_closed"


def test_attempts_are_limited(client, app, auth, monkeypatch):
    monkeypatch.setitem(app.config, "EVERIFY_MAX_ATTEMPTS", 2)
    start(client, auth)
    assert everify_state(client, auth)["retry_times"] == 1
    start(client, auth)
    response = client.post("/api/v1/client/kyc/e-verify/sessions", headers=auth, json=URLS)
    assert response.status_code == 409 and response.get_json()["code"] == "e_verify_attempts_exhausted"


def test_an_expired_session_is_refused(client, app, auth):
    from crm_app.extensions import db

    session = start(client, auth)
    with app.app_context():
        db.session.execute(
            sa.text("UPDATE everify_sessions SET expire_at = expire_at - :d WHERE id = :id"),
            {"d": timedelta(hours=2), "id": session["session_id"]},
        )
        db.session.commit()
    assert everify_state(client, auth)["status"] == "expired"

    response = client.post(f"{session['redirect_url']}/decide", data={"outcome": "pass"})
    assert response.status_code == 409 and response.get_json()["code"] == "e_verify_session_expired"
    body, headers = sim_vendor(app).callback(session["session_id"], passed=True)
    assert post_webhook(client, body, headers).status_code == 409
    kyc = client.get("/api/v1/client/kyc", headers=auth).get_json()
    assert kyc["kyc_data"]["e_verify"] == {}


def test_unknown_sessions_are_not_found(client, app, kyc_form):
    assert client.get("/api/v1/e-verify/sim/" + "0" * 32).status_code == 404
    assert client.post("/api/v1/e-verify/sim/nope/decide", data={"outcome": "pass"}).status_code == 404
    body, headers = sim_vendor(app).callback("0" * 32, passed=True)
    assert post_webhook(client, body, headers).status_code == 404


# The webhook ---------------------------------------------------------------------------------------


def test_a_signed_callback_records_the_result_once(client, app, auth):
    session = start(client, auth)
    body, headers = sim_vendor(app).callback(session["session_id"], passed=True)
    response = post_webhook(client, body, headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"session_id": session["session_id"], "status": "passed"}
    # The vendor retries a delivery: same answer, nothing new.
    assert post_webhook(client, body, headers).status_code == 200
    assert everify_state(client, auth)["status"] == "passed"

    contrary, contrary_headers = sim_vendor(app).callback(session["session_id"], passed=False)
    response = post_webhook(client, contrary, contrary_headers)
    assert response.status_code == 409
    assert everify_state(client, auth)["status"] == "passed"


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "body_changed", "no_signature", "no_timestamp", "stale", "garbage_signature"],
)
def test_a_badly_signed_callback_is_401_and_changes_nothing(client, app, auth, tamper):
    session = start(client, auth)
    body, headers = sim_vendor(app).callback(session["session_id"], passed=True)
    if tamper == "wrong_secret":
        body, headers = SimulatorVendor("not-the-secret").callback(session["session_id"], passed=True)
    elif tamper == "body_changed":
        body = body.replace(b'"passed"', b'"rejected"')
    elif tamper == "no_signature":
        del headers["X-Signature"]
    elif tamper == "no_timestamp":
        del headers["X-Signature-Timestamp"]
    elif tamper == "stale":
        stamp = int(time.time()) - 3600
        headers = {"X-Signature": sign(sim_vendor(app).secret, body, stamp), "X-Signature-Timestamp": str(stamp)}
    else:
        headers["X-Signature"] = "sha256=deadbeef"

    response = post_webhook(client, body, headers)
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_signature"
    assert everify_state(client, auth)["status"] == "pending"
    kyc = client.get("/api/v1/client/kyc", headers=auth).get_json()
    assert kyc["kyc_data"]["e_verify"] == {}


def test_a_signed_but_malformed_callback_is_422(client, app, kyc_form):
    vendor = sim_vendor(app)
    body = b'{"session_id": "x"}'
    stamp = int(time.time())
    headers = {"X-Signature": sign(vendor.secret, body, stamp), "X-Signature-Timestamp": str(stamp)}
    response = post_webhook(client, body, headers)
    assert response.status_code == 422 and response.get_json()["code"] == "invalid_callback"


def test_an_unknown_provider_is_404(client, kyc_form):
    assert (
        post_webhook(client, b"{}", {"X-Signature": "sha256=00", "X-Signature-Timestamp": "1"}, "acme").status_code
        == 404
    )


# Rules around sessions ---------------------------------------------------------------------------------


def test_session_urls_must_be_http_and_roles_apply(client, factory, auth):
    response = client.post(
        "/api/v1/client/kyc/e-verify/sessions",
        headers=auth,
        json={"success_url": "javascript:alert(1)", "failed_url": URLS["failed_url"]},
    )
    assert response.status_code == 422 and response.get_json()["code"] == "redirect_not_allowed"
    assert list(response.get_json()["errors"]) == ["success_url"]
    response = client.post(
        "/api/v1/client/kyc/e-verify/sessions", headers=auth, json={"success_url": URLS["success_url"]}
    )
    assert response.get_json()["errors"] == {"failed_url": ["Missing data for required field."]}
    assert client.post("/api/v1/client/kyc/e-verify/sessions", json=URLS).status_code == 401
    admin = factory.headers(client, factory.admin())
    assert client.post("/api/v1/client/kyc/e-verify/sessions", headers=admin, json=URLS).status_code == 403


def test_e_verify_can_be_switched_off_or_made_required(client, factory, auth):
    admin = factory.headers(client, factory.admin())
    client.put("/api/v1/admin/kyc/form", headers=admin, json={"module": "e_verify", "is_enabled": False})
    response = client.post("/api/v1/client/kyc/e-verify/sessions", headers=auth, json=URLS)
    assert response.status_code == 409 and response.get_json()["code"] == "e_verify_disabled"

    client.put(
        "/api/v1/admin/kyc/form", headers=admin, json={"module": "e_verify", "is_enabled": True, "is_required": True}
    )
    assert everify_state(client, auth)["is_required"] is True
    response = client.put("/api/v1/client/kyc", headers=auth, json={"current_module": "all", "kyc_data": {}})
    assert response.status_code == 422
    assert response.get_json()["errors"]["e_verify"] == ["Electronic identity verification must pass first."]


def test_no_session_once_kyc_is_submitted(client, app, auth, user):
    from crm_app.extensions import db

    with app.app_context():
        db.session.execute(
            sa.text(
                "INSERT INTO kyc_profiles (user_id, status, apply_status, data, completed_modules, kyc_way, "
                "created_at, updated_at) VALUES (:u, 'pending', 'pending', '{}', '[]', 'manual', now(), now())"
            ),
            {"u": user.id},
        )
        db.session.commit()
    response = client.post("/api/v1/client/kyc/e-verify/sessions", headers=auth, json=URLS)
    assert response.status_code == 409 and response.get_json()["code"] == "kyc_locked"


# The vendor interface on its own ---------------------------------------------------------------------------


def test_signature_check_accepts_only_fresh_exact_signatures():
    body = b'{"a":1}'
    now = 1_800_000_000
    good = {"X-Signature": sign("s3cret", body, now), "X-Signature-Timestamp": str(now)}
    check_signature("s3cret", body, good, tolerance=300, now=now + 299)
    for headers, when in (
        (good, now + 301),
        ({**good, "X-Signature": sign("other", body, now)}, now),
        ({**good, "X-Signature-Timestamp": str(now + 1)}, now),
        ({"X-Signature": good["X-Signature"]}, now),
        ({**good, "X-Signature-Timestamp": "soon"}, now),
    ):
        with pytest.raises(InvalidSignature):
            check_signature("s3cret", body, headers, tolerance=300, now=when)
    with pytest.raises(InvalidSignature):
        check_signature("s3cret", body + b" ", good, tolerance=300, now=now)


def test_simulator_callbacks_parse_back_to_results():
    vendor = SimulatorVendor("s3cret", clock=lambda: 1_800_000_000)
    body, headers = vendor.callback("abc", passed=False)
    vendor.verify_webhook_signature(body, headers)
    result = vendor.parse_result(body)
    assert (result.session_id, result.status, result.code) == ("abc", "rejected", "1001")
    assert result.verified_at.year == 2027
    for junk in (b"not json", b"[]", json.dumps({"session_id": "a", "result": "maybe", "verified_at": 1}).encode()):
        with pytest.raises(MalformedCallback):
            vendor.parse_result(junk)


def test_a_kyc_submitted_after_a_passed_check_is_done_the_e_verify_way(client, auth):
    from tests.test_kyc import fill_everything, submit

    session = start(client, auth)
    client.post(f"{session['redirect_url']}/decide", data={"outcome": "pass"})
    fill_everything(client, auth)
    submit(client, auth)
    body = client.get("/api/v1/client/kyc", headers=auth).get_json()
    assert body["kyc_status"] == "pending" and body["kyc_way"] == "e_verify"
