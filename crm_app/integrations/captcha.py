"""Server-side check of Tencent Cloud captcha tickets (API 3.0, DescribeCaptchaResult).

The browser widget hands the user a Ticket and a Randstr; only Tencent can say
whether they are genuine, so the server asks it before trusting a login or a
sign-up. Requests are signed with TC3-HMAC-SHA256 as the Tencent Cloud
"Signature v3" documentation prescribes; the `requests` library carries them.
"""

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

SERVICE = "captcha"
ACTION = "DescribeCaptchaResult"
API_VERSION = "2019-07-22"
SIGNING_ALGORITHM = "TC3-HMAC-SHA256"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host"

# The only CaptchaCode that means "a human solved this captcha".
CAPTCHA_CODE_PASSED = 1
# CaptchaCodes that point at our configuration rather than at the user:
# 16 = CaptchaAppId does not match the ticket, 100 = CaptchaAppId/AppSecretKey wrong.
CAPTCHA_CODES_MISCONFIGURED = {16, 100}


class CaptchaUnavailable(Exception):
    """Tencent could not give a verdict (network, HTTP, API error or missing settings).

    Callers decide whether to fail closed; a user is never rejected as a robot
    because our side or Tencent's side is broken. Messages never carry secrets.
    """


@dataclass(frozen=True)
class CaptchaSettings:
    endpoint: str
    secret_id: str
    secret_key: str = field(repr=False)
    app_id: int
    app_secret_key: str = field(repr=False)
    region: str = ""
    timeout: float = 5.0

    @classmethod
    def from_config(cls, cfg):
        """Build settings from a Flask-config-like mapping; gaps surface on first use."""
        return cls(
            endpoint=cfg.get("CAPTCHA_ENDPOINT") or "https://captcha.tencentcloudapi.com",
            secret_id=cfg.get("TENCENTCLOUD_SECRET_ID") or "",
            secret_key=cfg.get("TENCENTCLOUD_SECRET_KEY") or "",
            app_id=int(cfg.get("CAPTCHA_APP_ID") or 0),
            app_secret_key=cfg.get("CAPTCHA_APP_SECRET_KEY") or "",
            region=cfg.get("CAPTCHA_REGION") or "",
            timeout=float(cfg.get("CAPTCHA_TIMEOUT_SECONDS") or 5),
        )

    def missing_fields(self):
        """Names of the settings without which Tencent cannot be asked at all."""
        required = {
            "CAPTCHA_ENDPOINT": self.endpoint,
            "TENCENTCLOUD_SECRET_ID": self.secret_id,
            "TENCENTCLOUD_SECRET_KEY": self.secret_key,
            "CAPTCHA_APP_ID": self.app_id,
            "CAPTCHA_APP_SECRET_KEY": self.app_secret_key,
        }
        return [name for name, value in required.items() if not value]


def _unix_now():
    """Current time in whole seconds; a seam so tests can pin the signing clock."""
    return int(time.time())


def _hmac_sha256(key, message):
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def tc3_authorization(*, secret_id, secret_key, service, host, payload, timestamp, content_type=JSON_CONTENT_TYPE):
    """Authorization header value for a POST to "/" with a JSON body (Signature v3).

    Kept separate from the HTTP call so it can be checked against Tencent's
    published example without a network.
    """
    date = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
    canonical_headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    canonical_request = "\n".join(
        [
            "POST",
            "/",
            "",
            canonical_headers,
            SIGNED_HEADERS,
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    credential_scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        [
            SIGNING_ALGORITHM,
            str(timestamp),
            credential_scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ]
    )
    signing_key = _hmac_sha256(("TC3" + secret_key).encode("utf-8"), date)
    signing_key = _hmac_sha256(signing_key, service)
    signing_key = _hmac_sha256(signing_key, "tc3_request")
    signature = hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return (
        f"{SIGNING_ALGORITHM} Credential={secret_id}/{credential_scope}, "
        f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
    )


def _signed_headers(settings, host, payload):
    timestamp = _unix_now()
    headers = {
        "Authorization": tc3_authorization(
            secret_id=settings.secret_id,
            secret_key=settings.secret_key,
            service=SERVICE,
            host=host,
            payload=payload,
            timestamp=timestamp,
        ),
        "Content-Type": JSON_CONTENT_TYPE,
        # Sent explicitly so the header on the wire is the one that was signed.
        "Host": host,
        "X-TC-Action": ACTION,
        "X-TC-Version": API_VERSION,
        "X-TC-Timestamp": str(timestamp),
    }
    if settings.region:
        headers["X-TC-Region"] = settings.region
    return headers


def describe_captcha_result(settings, *, ticket, randstr, user_ip, captcha_type=9):
    """Ask Tencent about one ticket and return the inner `Response` object.

    Raises CaptchaUnavailable whenever no trustworthy CaptchaCode came back.
    """
    missing = settings.missing_fields()
    if missing:
        raise CaptchaUnavailable("captcha settings incomplete: " + ", ".join(missing))

    host = urlsplit(settings.endpoint).netloc
    if not host:
        raise CaptchaUnavailable("CAPTCHA_ENDPOINT is not an absolute URL")
    payload = json.dumps(
        {
            "CaptchaType": captcha_type,
            "Ticket": ticket,
            "UserIp": user_ip,
            "Randstr": randstr,
            "CaptchaAppId": settings.app_id,
            "AppSecretKey": settings.app_secret_key,
        }
    ).encode("utf-8")

    try:
        http_response = requests.post(
            settings.endpoint,
            data=payload,
            headers=_signed_headers(settings, host, payload),
            timeout=settings.timeout,
        )
    except requests.Timeout as exc:
        raise CaptchaUnavailable(f"captcha service timed out after {settings.timeout}s") from exc
    except requests.RequestException as exc:
        raise CaptchaUnavailable(f"captcha service unreachable: {type(exc).__name__}") from exc

    if http_response.status_code != 200:
        raise CaptchaUnavailable(f"captcha service answered HTTP {http_response.status_code}")
    try:
        body = http_response.json()
    except ValueError as exc:
        raise CaptchaUnavailable("captcha service answered with non-JSON content") from exc

    inner = body.get("Response") if isinstance(body, dict) else None
    if not isinstance(inner, dict):
        raise CaptchaUnavailable("captcha service answer has no Response object")
    error = inner.get("Error")
    if error is not None:
        code = error.get("Code", "?") if isinstance(error, dict) else "?"
        message = error.get("Message", "") if isinstance(error, dict) else ""
        raise CaptchaUnavailable(f"captcha API error {code}: {message} (RequestId {inner.get('RequestId', '?')})")
    captcha_code = inner.get("CaptchaCode")
    if not isinstance(captcha_code, int) or isinstance(captcha_code, bool):
        raise CaptchaUnavailable("captcha service answer has no integer CaptchaCode")
    return inner


def verify_captcha(settings, *, ticket, randstr, user_ip):
    """True only if Tencent confirms the ticket (CaptchaCode 1); False for any other code.

    A wrong, expired or replayed ticket is the user's problem and yields False;
    CaptchaUnavailable means there is no verdict at all.
    """
    result = describe_captcha_result(settings, ticket=ticket, randstr=randstr, user_ip=user_ip)
    captcha_code = result["CaptchaCode"]
    if captcha_code == CAPTCHA_CODE_PASSED:
        return True
    if captcha_code in CAPTCHA_CODES_MISCONFIGURED:
        # Every user would fail the same way: make the cause visible to operators.
        log.warning(
            "captcha rejected because of app configuration: CaptchaCode %s (%s)", captcha_code, result.get("CaptchaMsg")
        )
    else:
        log.info("captcha rejected: CaptchaCode %s (%s)", captcha_code, result.get("CaptchaMsg"))
    return False
