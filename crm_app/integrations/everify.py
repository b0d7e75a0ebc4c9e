"""Electronic identity verification (e-KYC) vendors, and the built-in simulator.

A vendor is asked for a session and hands back a page to send the user to; when the
user is done, the vendor calls our webhook (`POST /api/v1/webhooks/e-verify/{provider}`)
with the result. We trust a callback only when its HMAC-SHA256 signature over
`"<timestamp>.<raw body>"` is good and the timestamp is recent (no replays of old
deliveries).

The simulator vendor `sim` is the project's own: its page is served by this app
(`GET /api/v1/e-verify/sim/{session_id}`) with Pass and Fail buttons, and it signs its
callbacks exactly as a real vendor would, with `EVERIFY_SIM_SECRET`. Anyone can press
Pass, so it exists only with `APP_ENV` development or test: elsewhere `vendor_for`
does not know it (its sessions, pages and webhook are not found).
"""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from crm_app.config import SIMULATOR_ENVS

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
RESULT_STATUSES = ("passed", "rejected")


class InvalidSignature(Exception):
    """The callback is not provably from the vendor (missing, wrong or stale signature)."""


class MalformedCallback(Exception):
    """The callback is signed but its body is not a result we understand."""


@dataclass(frozen=True)
class VendorSession:
    redirect_url: str
    vendor_ref: str | None = None


@dataclass(frozen=True)
class VerificationResult:
    session_id: str
    status: str  # passed | rejected
    code: str
    message: str
    verified_at: datetime  # naive UTC


class EVerifyVendor(Protocol):
    name: str

    def create_session(self, session_id, success_url, failed_url, expire_at) -> VendorSession: ...

    def verify_webhook_signature(self, raw_body: bytes, headers) -> None:
        """Raise InvalidSignature unless the body was signed by the vendor just now."""

    def parse_result(self, raw_body: bytes) -> VerificationResult: ...


@dataclass(frozen=True)
class EVerifySettings:
    provider: str | None  # None: electronic verification is off
    sim_secret: str = field(repr=False)
    session_ttl_seconds: int = 1800
    max_attempts: int = 5
    signature_tolerance_seconds: int = 300
    public_base_url: str = ""
    app_env: str = "production"

    @classmethod
    def from_config(cls, cfg):
        return cls(
            provider=cfg.get("EVERIFY_PROVIDER") or None,
            sim_secret=cfg.get("EVERIFY_SIM_SECRET") or derived_secret(cfg["SECRET_KEY"], "everify-sim"),
            session_ttl_seconds=cfg.get("EVERIFY_SESSION_TTL_SECONDS", 1800),
            max_attempts=cfg.get("EVERIFY_MAX_ATTEMPTS", 5),
            signature_tolerance_seconds=cfg.get("EVERIFY_SIGNATURE_TOLERANCE_SECONDS", 300),
            public_base_url=(cfg.get("PUBLIC_BASE_URL") or "").rstrip("/"),
            app_env=cfg.get("APP_ENV") or "production",
        )

    @property
    def simulator_allowed(self):
        return self.app_env in SIMULATOR_ENVS


def derived_secret(secret_key, purpose):
    """A per-purpose secret from SECRET_KEY, so one leaked webhook secret is not the app's."""
    return hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def sign(secret, raw_body, timestamp):
    message = str(timestamp).encode() + b"." + raw_body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _header(headers, name):
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def check_signature(secret, raw_body, headers, tolerance, now=None):
    signature = _header(headers, SIGNATURE_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise InvalidSignature("missing signature or timestamp")
    try:
        stamp = int(timestamp)
    except ValueError:
        raise InvalidSignature("malformed timestamp") from None
    now = time.time() if now is None else now
    if abs(now - stamp) > tolerance:
        raise InvalidSignature("stale timestamp")
    if not hmac.compare_digest(signature.strip(), sign(secret, raw_body, stamp)):
        raise InvalidSignature("signature mismatch")


class SimulatorVendor:
    """The built-in vendor: a page of ours lets a person pass or fail the check."""

    name = "sim"
    PASSED = ("0000", "Identity verified.")
    FAILED = ("1001", "The document did not match the person.")

    def __init__(self, secret, public_base_url="", tolerance=300, clock=time.time):
        self.secret = secret
        self.public_base_url = public_base_url
        self.tolerance = tolerance
        self.clock = clock

    def create_session(self, session_id, success_url, failed_url, expire_at):
        return VendorSession(redirect_url=f"{self.public_base_url}/api/v1/e-verify/sim/{session_id}")

    def callback(self, session_id, passed):
        """The signed webhook delivery the simulator sends once the person decides."""
        code, message = self.PASSED if passed else self.FAILED
        body = json.dumps(
            {
                "session_id": session_id,
                "result": "passed" if passed else "rejected",
                "reason_code": code,
                "reason_msg": message,
                "verified_at": int(self.clock()),
            },
            separators=(",", ":"),
        ).encode()
        timestamp = int(self.clock())
        return body, {SIGNATURE_HEADER: sign(self.secret, body, timestamp), TIMESTAMP_HEADER: str(timestamp)}

    def verify_webhook_signature(self, raw_body, headers):
        check_signature(self.secret, raw_body, headers, self.tolerance, now=self.clock())

    def parse_result(self, raw_body):
        try:
            payload = json.loads(raw_body)
            session_id = str(payload["session_id"])
            status = payload["result"]
            if status not in RESULT_STATUSES:
                raise ValueError(status)
            verified_at = datetime.fromtimestamp(int(payload["verified_at"]), UTC).replace(tzinfo=None)
            return VerificationResult(
                session_id=session_id,
                status=status,
                code=str(payload.get("reason_code") or "")[:64],
                message=str(payload.get("reason_msg") or "")[:255],
                verified_at=verified_at,
            )
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise MalformedCallback(str(exc)) from None


def vendor_for(provider, settings):
    """The vendor called `provider`, or None when we do not know it (or it may not exist here)."""
    if provider == SimulatorVendor.name and settings.simulator_allowed:
        return SimulatorVendor(
            settings.sim_secret, settings.public_base_url, tolerance=settings.signature_tolerance_seconds
        )
    return None
