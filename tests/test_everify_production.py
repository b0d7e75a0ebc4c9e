"""E-verify in production (issue 11, item 4): the simulator vendor, which verifies anyone who
presses Pass, exists only in development and test; and the success/failed URLs a client
sends can only send a browser back to the broker's own front ends (no open redirect)."""

import uuid
from datetime import timedelta

import pytest

from crm_app.common.timeutil import utcnow
from crm_app.config import ConfigError, load_config

ERROR_KEYS = {"code", "status", "message", "errors"}
SESSIONS = "/api/v1/client/kyc/e-verify/sessions"
PORTAL = "https://portal.broker.com"
URLS = {"success_url": f"{PORTAL}/kyc/ok", "failed_url": "/kyc/failed"}


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("APP_ENV", "EVERIFY_PROVIDER", "FRONTEND_ORIGINS", "PUBLIC_BASE_URL", "SECRET_KEY", "JWT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def production_env(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv("JWT_SECRET_KEY", "j" * 40)


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


@pytest.fixture
def portal(app, monkeypatch):
    monkeypatch.setitem(app.config, "FRONTEND_ORIGINS", (PORTAL,))


@pytest.fixture
def production_like(app, monkeypatch):
    """The test app as production runs it (EVERIFY_PROVIDER unset means off there)."""
    monkeypatch.setitem(app.config, "APP_ENV", "production")
    monkeypatch.setitem(app.config, "EVERIFY_PROVIDER", None)


def assert_error(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ERROR_KEYS, body
    if code is not None:
        assert body["code"] == code, body
    return body


def stored_sim_session(user_id, success_url=URLS["success_url"], failed_url=URLS["failed_url"]):
    """A simulator session as an older release (or a development run) left it in the database."""
    from crm_app.extensions import db
    from crm_app.kyc.models import EVerifySession

    session_id = uuid.uuid4().hex
    db.session.add(
        EVerifySession(
            id=session_id,
            provider="sim",
            user_id=user_id,
            status="pending",
            attempt=1,
            success_url=success_url,
            failed_url=failed_url,
            redirect_url=f"/api/v1/e-verify/sim/{session_id}",
            created_at=utcnow(),
            expire_at=utcnow() + timedelta(minutes=30),
        )
    )
    db.session.commit()
    return session_id


def kyc_everify(client, auth):
    return client.get("/api/v1/client/kyc", headers=auth).get_json()["kyc_data"].get("e_verify") or {}


# Configuration -------------------------------------------------------------------------------


def test_production_refuses_to_start_with_the_simulator_vendor(clean_env):
    production_env(clean_env)
    clean_env.setenv("EVERIFY_PROVIDER", "sim")
    with pytest.raises(ConfigError, match="EVERIFY_PROVIDER=sim"):
        load_config()
    from crm_app import create_app

    with pytest.raises(ConfigError, match="simulator"):
        create_app()


def test_production_has_no_e_verify_vendor_unless_one_is_set(clean_env):
    production_env(clean_env)
    assert load_config()["EVERIFY_PROVIDER"] is None
    for env in ("development", "test"):
        clean_env.setenv("APP_ENV", env)
        assert load_config()["EVERIFY_PROVIDER"] == "sim"
        clean_env.setenv("EVERIFY_PROVIDER", "off")
        assert load_config()["EVERIFY_PROVIDER"] is None
        clean_env.delenv("EVERIFY_PROVIDER")


def test_frontend_origins_are_normalised_and_malformed_ones_refused(clean_env):
    clean_env.setenv("APP_ENV", "test")
    clean_env.setenv(
        "FRONTEND_ORIGINS", " HTTPS://Portal.Broker.com:443/ , http://localhost:3000,https://a.example:8443"
    )
    assert load_config()["FRONTEND_ORIGINS"] == (PORTAL, "http://localhost:3000", "https://a.example:8443")
    clean_env.delenv("FRONTEND_ORIGINS")
    assert load_config()["FRONTEND_ORIGINS"] == ()
    for bad in ("portal.broker.com", "https://portal.broker.com/kyc", "javascript:alert(1)", "https://u@portal.com"):
        clean_env.setenv("FRONTEND_ORIGINS", bad)
        with pytest.raises(ConfigError, match="FRONTEND_ORIGINS"):
            load_config()


def test_public_base_url_counts_as_a_frontend_origin_only_in_development_and_test():
    from crm_app.common.redirects import redirect_allowed

    url = "https://crm.broker.com/kyc/ok"
    for env, allowed in (("development", True), ("test", True), ("production", False)):
        cfg = {"APP_ENV": env, "FRONTEND_ORIGINS": (), "PUBLIC_BASE_URL": "https://CRM.broker.com:443/"}
        assert redirect_allowed(url, cfg) is allowed, env
        assert redirect_allowed("/kyc/ok", cfg) is True


# The simulator in production -------------------------------------------------------------------


def test_production_app_has_no_simulator_routes_and_answers_404_in_our_shape(app, clean_env):
    """A real production app (APP_ENV=production, EVERIFY_PROVIDER unset) does not even route them."""
    from crm_app import create_app
    from crm_app.extensions import api, db

    saved = (api._app, api.config, api.spec)  # the one Api object documents the app built last
    production_env(clean_env)
    production = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": app.config["REDIS_URL"],
            "TESTING": True,
        }
    )
    try:
        assert production.config["EVERIFY_PROVIDER"] is None
        rules = {rule.rule for rule in production.url_map.iter_rules()}
        assert not any("/e-verify/sim" in rule for rule in rules), rules
        web = production.test_client()
        session_id = uuid.uuid4().hex
        assert_error(web.get(f"/api/v1/e-verify/sim/{session_id}"), 404, "not_found")
        assert_error(web.post(f"/api/v1/e-verify/sim/{session_id}/decide", data={"outcome": "pass"}), 404)
        paths = web.get("/api/v1/openapi.json").get_json()["paths"]
        assert not [path for path in paths if "/e-verify/sim" in path]
    finally:
        with production.app_context():
            db.engine.dispose()
        api._app, api.config, api.spec = saved


def test_a_client_cannot_pass_their_own_check_in_production(client, app, auth, user, production_like):
    """The attack of the issue: the simulator's page and its Pass button, and its signed webhook."""
    from crm_app.integrations.everify import EVerifySettings, SimulatorVendor

    session_id = stored_sim_session(user.id)
    assert_error(client.get(f"/api/v1/e-verify/sim/{session_id}", headers=auth), 404, "not_found")
    decided = client.post(f"/api/v1/e-verify/sim/{session_id}/decide", headers=auth, data={"outcome": "pass"})
    assert_error(decided, 404, "not_found")

    secret = EVerifySettings.from_config(app.config).sim_secret
    body, headers = SimulatorVendor(secret).callback(session_id, passed=True)
    webhook = client.post(
        "/api/v1/webhooks/e-verify/sim", data=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert_error(webhook, 404, "not_found")
    assert kyc_everify(client, auth) == {}


def test_starting_a_session_in_production_says_e_verify_is_off(client, auth, production_like):
    response = client.post(SESSIONS, headers=auth, json=URLS)
    body = assert_error(response, 503, "e_verify_unavailable")
    assert "e_verify" in body["errors"]
    state = client.get("/api/v1/client/kyc/form", headers=auth).get_json()["e_verify"]
    assert state["status"] == "off" and state["is_enabled"] is False and state["is_required"] is False
    assert state["provider"] == "" and state["retry_times"] == 0


def test_a_required_e_verify_does_not_block_kyc_when_no_vendor_is_set_up(client, factory, auth, production_like):
    """With e-verify off nobody could pass it: the submission goes to manual review instead."""
    from tests.test_kyc import fill_everything, submit

    admin = factory.headers(client, factory.admin())
    client.put(
        "/api/v1/admin/kyc/form", headers=admin, json={"module": "e_verify", "is_enabled": True, "is_required": True}
    )
    fill_everything(client, auth)
    submit(client, auth)
    body = client.get("/api/v1/client/kyc", headers=auth).get_json()
    assert body["kyc_status"] == "pending" and body["kyc_way"] == "manual"


# Redirect targets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.com/kyc/ok",
        "//evil.com/kyc",
        "/\\evil.com",
        "\\\\evil.com",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://portal.broker.com@evil.com/",
        "https://portal.broker.com:443@evil.com/",
        "https://portal.broker.com\\@evil.com/",
        "https://portal.broker.com.evil.com/",
        "http://portal.broker.com/kyc/ok",
        "https://portal.broker.com:8443/kyc/ok",
        "https:portal.broker.com/kyc",
        "https:/portal.broker.com/kyc",
        "ftp://portal.broker.com/",
        "portal.broker.com/kyc",
        " /kyc/ok",
        "/kyc/ok\r\nSet-Cookie: a=b",
        "/\t/evil.com",
        "/kyc\u202e/ok",
        "https://porta\u0000l.broker.com/",
    ],
)
def test_an_open_redirect_target_is_refused(client, auth, portal, target):
    response = client.post(SESSIONS, headers=auth, json={**URLS, "success_url": target})
    # A NUL byte is refused before the redirect rule by the check every JSON string goes through.
    body = assert_error(response, 422, "validation_error" if "\u0000" in target else "redirect_not_allowed")
    assert list(body["errors"]) == ["success_url"]
    assert client.get("/api/v1/client/kyc/form", headers=auth).get_json()["e_verify"]["attempt_times"] == 0


def test_both_bad_targets_are_named(client, auth, portal):
    response = client.post(SESSIONS, headers=auth, json={"success_url": "//evil.com", "failed_url": "https://x.io"})
    assert sorted(assert_error(response, 422, "redirect_not_allowed")["errors"]) == ["failed_url", "success_url"]


def test_without_frontend_origins_only_relative_paths_are_accepted(client, auth):
    response = client.post(SESSIONS, headers=auth, json=URLS)
    assert list(assert_error(response, 422, "redirect_not_allowed")["errors"]) == ["success_url"]
    response = client.post(SESSIONS, headers=auth, json={"success_url": "/kyc/ok", "failed_url": "/kyc/failed"})
    assert response.status_code == 201, response.get_json()


def test_an_allowed_origin_and_a_relative_path_are_accepted_and_used(client, auth, portal):
    success = "https://PORTAL.broker.com:443/kyc/ok?lang=zh-CN#done"
    response = client.post(SESSIONS, headers=auth, json={"success_url": success, "failed_url": "/kyc/failed"})
    assert response.status_code == 201, response.get_json()
    page = response.get_json()["redirect_url"]
    decided = client.post(f"{page}/decide", data={"outcome": "pass"})
    assert decided.status_code == 303
    assert decided.headers["Location"] == "https://portal.broker.com:443/kyc/ok?lang=zh-CN#done"  # the host lower-cased

    again = client.post(SESSIONS, headers=auth, json={"success_url": "/ok", "failed_url": "/kyc/failed"})
    assert again.status_code == 409  # already passed (the relative paths themselves were fine)


def test_a_stored_session_with_a_bad_target_redirects_nowhere(client, auth, user, portal):
    """Sessions recorded before the rule (or before the origins changed) cannot redirect off-site."""
    session_id = stored_sim_session(user.id, success_url="https://evil.com/phish")
    decided = client.post(f"/api/v1/e-verify/sim/{session_id}/decide", data={"outcome": "pass"})
    body = assert_error(decided, 422, "redirect_not_allowed")
    assert list(body["errors"]) == ["success_url"] and "Location" not in decided.headers
    assert kyc_everify(client, auth) == {}  # nothing half done: the result was not recorded

    failed = client.post(f"/api/v1/e-verify/sim/{session_id}/decide", data={"outcome": "fail"})
    assert failed.status_code == 303 and failed.headers["Location"] == "/kyc/failed"
