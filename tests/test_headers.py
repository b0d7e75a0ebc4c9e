"""Caching and transport headers: no cache keeps a token, a KYC answer or a bank number;
HTTPS is pinned once a request arrived over it; uploads are served as inert files."""

import io
import re

import pytest

from crm_app.exports.services import start_export
from tests.support.factory import PASSWORD

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture
def user_and_headers(client, factory):
    user = factory.user()
    return user, factory.headers(client, user)


# Cache-Control ----------------------------------------------------------------------------


def test_answers_that_carry_tokens_are_not_stored(client, factory):
    user = factory.user()
    login = client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200 and login.get_json()["token"]
    assert login.headers["Cache-Control"] == "no-store"
    refresh = client.post(
        "/api/v1/auth/refresh", headers={"Authorization": f"Bearer {login.get_json()['refresh_token']}"}
    )
    assert refresh.status_code == 200 and refresh.headers["Cache-Control"] == "no-store"
    register = client.post("/api/v1/auth/register", json={"email": "new@example.test", "password": PASSWORD})
    assert register.headers["Cache-Control"] == "no-store", register.status_code


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/client/kyc",
        "/api/v1/client/payment-accounts",
        "/api/v1/auth/permissions",
        "/api/v1/client/transfers?status=all",
        "/api/v1/client/trading-accounts/987654",  # an error answer too
    ],
)
def test_every_answer_to_a_signed_in_request_is_not_stored(client, user_and_headers, path):
    _, headers = user_and_headers
    response = client.get(path, headers=headers)
    assert response.status_code < 500
    assert response.headers["Cache-Control"] == "no-store"


def test_a_refused_token_is_not_stored_either(client):
    response = client.get("/api/v1/client/kyc", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401 and response.headers["Cache-Control"] == "no-store"


def test_swagger_ui_assets_stay_cacheable(client):
    response = client.get("/swagger-ui-assets/swagger-ui.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")
    assert "max-age=86400" in response.headers["Cache-Control"]


def test_a_route_that_may_be_cached_keeps_its_own_cache_control(client, factory):
    ib = factory.ib()
    code = client.get("/api/v1/ib/profile", headers=factory.headers(client, ib)).get_json()["ReferralCode"]
    response = client.get(f"/api/v1/ib/referral-qr/{code}.png")
    assert response.status_code == 200
    assert "public" in response.headers["Cache-Control"] and "no-store" not in response.headers["Cache-Control"]


# Strict-Transport-Security ------------------------------------------------------------------


def test_hsts_only_when_the_request_arrived_over_https(client, user_and_headers):
    _, headers = user_and_headers
    secure = client.get("/api/v1/client/kyc", headers=headers, base_url="https://crm.example.test")
    assert secure.headers["Strict-Transport-Security"] == HSTS
    assert client.get("/healthz", base_url="https://crm.example.test").headers["Strict-Transport-Security"] == HSTS
    plain = client.get("/api/v1/client/kyc", headers=headers)
    assert "Strict-Transport-Security" not in plain.headers


def test_an_untrusted_forwarded_proto_does_not_count(client):
    """Without a trusted proxy (TRUSTED_PROXY_COUNT=0) anyone can send the header."""
    response = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers


def test_https_through_a_trusted_proxy_counts(app, database_url, redis_url):
    from crm_app import create_app

    proxied = create_app(
        {
            "APP_ENV": "test",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "TESTING": True,
            "TRUSTED_PROXY_COUNT": 1,
        }
    ).test_client()
    behind_tls = proxied.get("/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert behind_tls.headers["Strict-Transport-Security"] == HSTS
    assert "Strict-Transport-Security" not in proxied.get("/healthz", headers={"X-Forwarded-Proto": "http"}).headers
    # Only the last hop is trusted: a client's own X-Forwarded-Proto before it does not count.
    spoofed = proxied.get("/healthz", headers={"X-Forwarded-Proto": "https, http"})
    assert "Strict-Transport-Security" not in spoofed.headers


# Uploads and exports ------------------------------------------------------------------------


def upload(client, headers, name):
    response = client.post(
        "/api/v1/uploads",
        headers=headers,
        data={"file": (io.BytesIO(PNG), name)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.mark.parametrize(
    "name",
    [
        "page.html",
        "receipt\u202egnp.html",  # shows as "receipthtml.png" where the override is honoured
        "a\u0000b.png",
        "tab\tbell\u0007.png",
        "收据.png",
    ],
)
def test_an_upload_is_served_inert_under_a_name_from_its_sniffed_type(client, user_and_headers, name):
    _, headers = user_and_headers
    answer = upload(client, headers, name)
    response = client.get(f"/api/v1/uploads/{answer['id']}", headers=headers)
    assert response.status_code == 200 and response.data == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(rf'inline; filename="?upload-{answer["id"]}\.png"?', disposition), disposition


def test_the_uploaded_name_is_kept_without_control_or_override_characters(app, client, user_and_headers):
    from crm_app.extensions import db
    from crm_app.uploads.models import Upload

    _, headers = user_and_headers
    answer = upload(client, headers, "re\u202eceipt\u0007\u200f 01.png")
    with app.app_context():
        assert db.session.get(Upload, answer["id"]).original_name == "receipt 01.png"


def test_a_signed_export_download_is_private_and_not_stored(app, client, user_and_headers, run_jobs):
    user, _ = user_and_headers
    with app.test_request_context():
        url = start_export(user, "own-transfers", {}, "csv")["download_url"]
    pending = client.get(url)
    assert pending.status_code == 202 and pending.headers["Cache-Control"] == "no-store"
    run_jobs()
    done = client.get(url)
    assert done.status_code == 200
    assert done.headers["Cache-Control"] == "private, no-store"
    refused = client.get(url.split("?")[0] + "?token=forged")
    assert refused.status_code == 403 and refused.headers["Cache-Control"] == "no-store"


def test_the_procfile_web_process_trusts_no_forwarded_header_by_itself(database_url, redis_url, tmp_path):
    """gunicorn believes X-Forwarded-Proto from 127.0.0.1 by default; the Procfile switches that
    off, so only the app's TRUSTED_PROXY_COUNT decides whether a request came over HTTPS."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import requests

    from tests.support.procfile_stack import free_port, procfile_commands

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    env.pop("FORWARDED_ALLOW_IPS", None)
    log = (tmp_path / "web.log").open("wb")
    web = subprocess.Popen(
        ["bash", "-c", "exec " + procfile_commands()["web"]], cwd=root, env=env, stdout=log, stderr=log
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1/config/broker"
        for _ in range(150):
            try:
                answer = requests.get(url, headers={"X-Forwarded-Proto": "https"}, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            pytest.fail((tmp_path / "web.log").read_text())
        assert answer.status_code == 200
        assert "Strict-Transport-Security" not in answer.headers
    finally:
        web.terminate()
        web.wait(timeout=30)
        log.close()
