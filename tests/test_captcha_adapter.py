"""The Tencent captcha adapter, exercised over HTTP against the loopback fake."""

import hashlib
import hmac
import logging
import socket
import time
from datetime import UTC, datetime

import pytest
import requests

from crm_app.integrations import captcha
from crm_app.integrations.captcha import (
    CaptchaSettings,
    CaptchaUnavailable,
    describe_captcha_result,
    tc3_authorization,
    verify_captcha,
)
from tests.fakes.tencent_captcha import FakeTencentCaptcha

SECRET_ID = "AKIDtestSecretId0001"
SECRET_KEY = "testSecretKeyNeverPrinted"
APP_ID = 190012345
APP_SECRET_KEY = "testAppSecretKey"
USER_IP = "203.0.113.7"


@pytest.fixture
def fake():
    with FakeTencentCaptcha(
        secret_id=SECRET_ID, secret_key=SECRET_KEY, app_id=APP_ID, app_secret_key=APP_SECRET_KEY
    ) as server:
        yield server


def settings_for(endpoint, **overrides):
    values = {
        "endpoint": endpoint,
        "secret_id": SECRET_ID,
        "secret_key": SECRET_KEY,
        "app_id": APP_ID,
        "app_secret_key": APP_SECRET_KEY,
        "region": "",
        "timeout": 2.0,
    }
    values.update(overrides)
    return CaptchaSettings(**values)


def closed_port_url():
    """A loopback URL nobody listens on: bind an ephemeral port, then release it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- verdicts -----------------------------------------------------------------


def test_valid_ticket_passes_and_sends_documented_fields(fake):
    fake.add_valid_ticket("t-valid", "rand-1")

    assert verify_captcha(settings_for(fake.base_url), ticket="t-valid", randstr="rand-1", user_ip=USER_IP) is True

    assert fake.requests == [
        {
            "CaptchaType": 9,
            "Ticket": "t-valid",
            "UserIp": USER_IP,
            "Randstr": "rand-1",
            "CaptchaAppId": APP_ID,
            "AppSecretKey": APP_SECRET_KEY,
        }
    ]
    headers = fake.request_headers[0]
    assert headers["x-tc-action"] == "DescribeCaptchaResult"
    assert headers["x-tc-version"] == "2019-07-22"
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert "x-tc-region" not in headers


def test_successful_result_carries_tencent_response_fields(fake):
    fake.add_valid_ticket("t-valid", "rand-1")

    result = describe_captcha_result(settings_for(fake.base_url), ticket="t-valid", randstr="rand-1", user_ip=USER_IP)

    assert result["CaptchaCode"] == 1
    assert result["CaptchaMsg"] == "OK"
    assert result["EvilLevel"] == 0
    assert isinstance(result["GetCaptchaTime"], int)
    assert result["RequestId"]


def test_unknown_ticket_is_rejected(fake):
    settings = settings_for(fake.base_url)

    assert verify_captcha(settings, ticket="t-forged", randstr="rand-1", user_ip=USER_IP) is False
    assert describe_captcha_result(settings, ticket="t-forged", randstr="rand-1", user_ip=USER_IP)["CaptchaCode"] == 15


def test_replayed_ticket_is_rejected(fake):
    settings = settings_for(fake.base_url)
    fake.add_valid_ticket("t-once", "rand-1")

    assert verify_captcha(settings, ticket="t-once", randstr="rand-1", user_ip=USER_IP) is True
    assert verify_captcha(settings, ticket="t-once", randstr="rand-1", user_ip=USER_IP) is False
    assert describe_captcha_result(settings, ticket="t-once", randstr="rand-1", user_ip=USER_IP)["CaptchaCode"] == 9


def test_randstr_from_another_challenge_is_rejected(fake):
    fake.add_valid_ticket("t-valid", "rand-1")

    assert verify_captcha(settings_for(fake.base_url), ticket="t-valid", randstr="rand-other", user_ip=USER_IP) is False


def test_expired_ticket_is_rejected(fake):
    fake.add_valid_ticket("t-old", "rand-1", issued_at=time.time() - 301)

    assert verify_captcha(settings_for(fake.base_url), ticket="t-old", randstr="rand-1", user_ip=USER_IP) is False


def test_wrong_app_secret_key_rejects_and_warns_operators(fake, caplog):
    fake.add_valid_ticket("t-valid", "rand-1")
    settings = settings_for(fake.base_url, app_secret_key="not-the-app-key")

    with caplog.at_level(logging.WARNING, logger=captcha.__name__):
        assert verify_captcha(settings, ticket="t-valid", randstr="rand-1", user_ip=USER_IP) is False

    assert "CaptchaCode 100" in caplog.text


# -- no verdict: CaptchaUnavailable -------------------------------------------


def test_wrong_secret_key_is_unavailable_without_leaking_it(fake):
    settings = settings_for(fake.base_url, secret_key="wrongSecretKeyAlsoNeverPrinted")

    with pytest.raises(CaptchaUnavailable, match="AuthFailure.SignatureFailure") as excinfo:
        verify_captcha(settings, ticket="t", randstr="r", user_ip=USER_IP)

    assert settings.secret_key not in str(excinfo.value)
    assert settings.secret_key not in repr(settings)
    assert settings.app_secret_key not in repr(settings)


def test_unknown_secret_id_is_unavailable(fake):
    with pytest.raises(CaptchaUnavailable, match="AuthFailure.SecretIdNotFound"):
        verify_captcha(
            settings_for(fake.base_url, secret_id="AKIDsomeoneElse"), ticket="t", randstr="r", user_ip=USER_IP
        )


def test_clock_skew_beyond_five_minutes_is_unavailable(fake, monkeypatch):
    monkeypatch.setattr(captcha, "_unix_now", lambda: int(time.time()) - 301)

    with pytest.raises(CaptchaUnavailable, match="AuthFailure.SignatureExpire"):
        verify_captcha(settings_for(fake.base_url), ticket="t", randstr="r", user_ip=USER_IP)


def test_server_down_is_unavailable():
    with pytest.raises(CaptchaUnavailable, match="unreachable"):
        verify_captcha(settings_for(closed_port_url()), ticket="t", randstr="r", user_ip=USER_IP)


def test_slow_server_times_out_as_unavailable(fake):
    fake.delay_seconds = 3.0
    started = time.monotonic()

    with pytest.raises(CaptchaUnavailable, match="timed out"):
        verify_captcha(settings_for(fake.base_url, timeout=0.3), ticket="t", randstr="r", user_ip=USER_IP)

    assert time.monotonic() - started < 2.0


def test_http_500_is_unavailable(fake):
    fake.fail_with_http_500 = True

    with pytest.raises(CaptchaUnavailable, match="HTTP 500"):
        verify_captcha(settings_for(fake.base_url), ticket="t", randstr="r", user_ip=USER_IP)


def test_non_json_answer_is_unavailable(fake):
    fake.reply_with_garbage = True

    with pytest.raises(CaptchaUnavailable, match="non-JSON"):
        verify_captcha(settings_for(fake.base_url), ticket="t", randstr="r", user_ip=USER_IP)


def test_incomplete_settings_are_unavailable_without_any_request(fake):
    settings = CaptchaSettings.from_config({"CAPTCHA_ENDPOINT": fake.base_url, "TENCENTCLOUD_SECRET_ID": SECRET_ID})

    with pytest.raises(CaptchaUnavailable, match="TENCENTCLOUD_SECRET_KEY") as excinfo:
        verify_captcha(settings, ticket="t", randstr="r", user_ip=USER_IP)

    assert "CAPTCHA_APP_ID" in str(excinfo.value)
    assert fake.requests == []


# -- settings -------------------------------------------------------------------


def test_settings_from_flask_style_config(fake):
    settings = CaptchaSettings.from_config(
        {
            "CAPTCHA_ENDPOINT": fake.base_url,
            "TENCENTCLOUD_SECRET_ID": SECRET_ID,
            "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
            "CAPTCHA_APP_ID": APP_ID,
            "CAPTCHA_APP_SECRET_KEY": APP_SECRET_KEY,
            "CAPTCHA_REGION": "ap-guangzhou",
            "CAPTCHA_TIMEOUT_SECONDS": 5,
        }
    )
    fake.add_valid_ticket("t-valid", "rand-1")

    assert settings.app_id == APP_ID and settings.timeout == 5.0
    assert verify_captcha(settings, ticket="t-valid", randstr="rand-1", user_ip=USER_IP) is True
    assert fake.request_headers[0]["x-tc-region"] == "ap-guangzhou"


# -- signature known answers ------------------------------------------------------


def test_signature_matches_tencent_published_example():
    """The worked example in Tencent's "Signature v3" documentation (service cvm)."""
    payload = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'

    authorization = tc3_authorization(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        service="cvm",
        host="cvm.tencentcloudapi.com",
        payload=payload,
        timestamp=1551113065,
    )

    assert authorization == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/"
        "tc3_request, SignedHeaders=content-type;host, "
        "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )


def signature_by_the_documented_steps(*, secret_key, host, payload, timestamp):
    """Signature v3 spelled out step by step, independently of the adapter."""
    date = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
    canonical_request = (
        "POST\n"
        "/\n"
        "\n"
        "content-type:application/json; charset=utf-8\n"
        f"host:{host}\n"
        "\n"
        "content-type;host\n" + hashlib.sha256(payload).hexdigest()
    )
    string_to_sign = (
        "TC3-HMAC-SHA256\n"
        f"{timestamp}\n"
        f"{date}/captcha/tc3_request\n" + hashlib.sha256(canonical_request.encode()).hexdigest()
    )
    secret_date = hmac.new(("TC3" + secret_key).encode(), date.encode(), hashlib.sha256).digest()
    secret_service = hmac.new(secret_date, b"captcha", hashlib.sha256).digest()
    secret_signing = hmac.new(secret_service, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(secret_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()


def test_signature_on_the_wire_matches_independent_derivation(monkeypatch):
    fixed_timestamp = 1700000000  # 2023-11-14 22:13:20 UTC
    monkeypatch.setattr(captcha, "_unix_now", lambda: fixed_timestamp)
    with FakeTencentCaptcha(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        app_id=APP_ID,
        app_secret_key=APP_SECRET_KEY,
        clock=lambda: fixed_timestamp,
    ) as fake:
        fake.add_valid_ticket("t-valid", "rand-1")
        assert verify_captcha(settings_for(fake.base_url), ticket="t-valid", randstr="rand-1", user_ip=USER_IP) is True
        host = fake.base_url.removeprefix("http://")

    headers = fake.request_headers[0]
    payload = (
        b'{"CaptchaType": 9, "Ticket": "t-valid", "UserIp": "203.0.113.7", '
        b'"Randstr": "rand-1", "CaptchaAppId": 190012345, '
        b'"AppSecretKey": "testAppSecretKey"}'
    )
    expected = signature_by_the_documented_steps(
        secret_key=SECRET_KEY, host=host, payload=payload, timestamp=fixed_timestamp
    )
    assert headers["host"] == host
    assert headers["x-tc-timestamp"] == str(fixed_timestamp)
    assert headers["authorization"] == (
        f"TC3-HMAC-SHA256 Credential={SECRET_ID}/2023-11-14/captcha/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={expected}"
    )


# -- the fake holds the adapter to the protocol -------------------------------------


def signed_raw_post(fake, payload, *, action="DescribeCaptchaResult", signed_payload=None):
    host = fake.base_url.removeprefix("http://")
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": "2019-07-22",
        "X-TC-Timestamp": str(timestamp),
        "Authorization": tc3_authorization(
            secret_id=SECRET_ID,
            secret_key=SECRET_KEY,
            service="captcha",
            host=host,
            payload=signed_payload or payload,
            timestamp=timestamp,
        ),
    }
    return requests.post(fake.base_url, data=payload, headers=headers, timeout=2).json()


def test_fake_rejects_body_changed_after_signing(fake):
    signed = b'{"CaptchaType": 9, "Ticket": "a"}'
    sent = b'{"CaptchaType": 9, "Ticket": "b"}'

    answer = signed_raw_post(fake, sent, signed_payload=signed)

    assert answer["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert answer["Response"]["RequestId"]


def test_fake_rejects_unknown_action(fake):
    answer = signed_raw_post(fake, b"{}", action="DescribeSomethingElse")

    assert answer["Response"]["Error"]["Code"] == "InvalidAction"
