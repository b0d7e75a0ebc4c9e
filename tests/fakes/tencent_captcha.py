"""A loopback stand-in for captcha.tencentcloudapi.com that speaks the real protocol.

It checks requests the way Tencent does (TC3-HMAC-SHA256 signature, secret id,
clock skew, action and version) and answers DescribeCaptchaResult with the
documented CaptchaCode values, so the adapter is tested against the protocol
rather than against a mock of itself. The signature check here is written
independently of the production code on purpose: a shared bug would pass.

Errors come back with HTTP 200 and a Response.Error object, as Tencent does.
"""

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACTION = "DescribeCaptchaResult"
VERSION = "2019-07-22"
SERVICE = "captcha"
MAX_CLOCK_SKEW_SECONDS = 300
TICKET_LIFETIME_SECONDS = 300

# CaptchaCode values documented for DescribeCaptchaResult.
CODE_OK = (1, "OK")
CODE_RANDSTR_MISMATCH = (7, "captcha no match")
CODE_TICKET_EXPIRED = (8, "ticket expired")
CODE_TICKET_REUSED = (9, "ticket reused")
CODE_TICKET_INVALID = (15, "decrypt fail")
CODE_APPID_MISMATCH = (16, "appid-ticket mismatch")
CODE_APP_SECRET_MISMATCH = (100, "appid-secretkey-ticket mismatch")

AUTHORIZATION_PATTERN = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<secret_id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})"
    r"/(?P<service>[^/]+)/tc3_request, SignedHeaders=(?P<signed_headers>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


class _ApiError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _hmac_digest(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def expected_signature(secret_key, *, date, service, timestamp, headers, signed_headers, body):
    """Signature v3 as documented, from the headers the client said it signed."""
    names = signed_headers.split(";")
    canonical_headers = "".join(f"{name}:{(headers.get(name) or '').strip().lower()}\n" for name in names)
    canonical_request = f"POST\n/\n\n{canonical_headers}\n{signed_headers}\n{hashlib.sha256(body).hexdigest()}"
    string_to_sign = (
        f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n"
        f"{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
    )
    key = _hmac_digest(f"TC3{secret_key}".encode(), date)
    key = _hmac_digest(key, service)
    key = _hmac_digest(key, "tc3_request")
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


class FakeTencentCaptcha:
    """Fake captcha API on 127.0.0.1; `start()` returns its base URL.

    Tickets registered with `add_valid_ticket` pass once; `requests` holds the
    JSON bodies received and `request_headers` their headers. Set
    `fail_with_http_500`, `reply_with_garbage` or `delay_seconds` to simulate
    an unhealthy service. `clock` lets a test pin the server's notion of now.
    """

    def __init__(
        self,
        *,
        secret_id="AKIDfakeSecretId",
        secret_key="fakeSecretKey",
        app_id=190000001,
        app_secret_key="fakeAppSecretKey",
        clock=time.time,
    ):
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.app_id = app_id
        self.app_secret_key = app_secret_key
        self.clock = clock
        self.fail_with_http_500 = False
        self.reply_with_garbage = False
        self.delay_seconds = 0.0
        self.requests = []
        self.request_headers = []
        self._tickets = {}  # ticket -> (randstr, issued_at)
        self._used_tickets = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None

    # -- lifecycle -------------------------------------------------------

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                fake._handle(self)

            def log_message(self, format, *args):  # keep test output quiet
                pass

        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps stop() (and so every test teardown) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="fake-tencent-captcha", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self):
        if self._server is None:
            return
        self._stopping.set()  # wakes handlers parked in delay_seconds
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def base_url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    # -- test controls -----------------------------------------------------

    def add_valid_ticket(self, ticket, randstr, *, issued_at=None):
        """Register a ticket as if the widget had just issued it to a human."""
        with self._lock:
            self._tickets[ticket] = (randstr, self.clock() if issued_at is None else issued_at)

    # -- protocol ------------------------------------------------------------

    def _handle(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self.request_headers.append(headers)
            try:
                self.requests.append(json.loads(body))
            except ValueError:
                self.requests.append(body)

        if self.delay_seconds and self._stopping.wait(self.delay_seconds):
            return
        if self.fail_with_http_500:
            self._send(handler, 500, b"<html><body>500 Internal Server Error</body></html>", "text/html")
            return
        if self.reply_with_garbage:
            self._send(handler, 200, b"<html>this is not JSON</html>", "text/html")
            return

        request_id = str(uuid.uuid4())
        try:
            self._authenticate(headers, body)
            params = self._parse_params(body)
            response = self._describe_captcha_result(params)
        except _ApiError as error:
            response = {"Error": {"Code": error.code, "Message": error.message}}
        response["RequestId"] = request_id
        self._send(handler, 200, json.dumps({"Response": response}).encode("utf-8"), "application/json")

    def _authenticate(self, headers, body):
        match = AUTHORIZATION_PATTERN.match(headers.get("authorization", ""))
        if not match:
            raise _ApiError("AuthFailure.InvalidAuthorization", "Authorization in the request header is invalid.")
        if match["secret_id"] != self.secret_id:
            raise _ApiError(
                "AuthFailure.SecretIdNotFound",
                "The SecretId is not found, please ensure that your SecretId is correct.",
            )
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            raise _ApiError("MissingParameter", "The request is missing a valid X-TC-Timestamp.") from None
        if abs(self.clock() - timestamp) > MAX_CLOCK_SKEW_SECONDS:
            raise _ApiError(
                "AuthFailure.SignatureExpire",
                "Signature expired. Timestamp and server time cannot differ by more than five minutes.",
            )
        signed_headers = match["signed_headers"]
        signed = signed_headers.split(";")
        scope_date = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
        expected = expected_signature(
            self.secret_key,
            date=match["date"],
            service=match["service"],
            timestamp=timestamp,
            headers=headers,
            signed_headers=signed_headers,
            body=body,
        )
        if (
            "content-type" not in signed
            or "host" not in signed
            or match["service"] != SERVICE
            or match["date"] != scope_date
            or not hmac.compare_digest(expected, match["signature"])
        ):
            raise _ApiError(
                "AuthFailure.SignatureFailure",
                "The provided credentials could not be validated. Please check your signature is correct.",
            )
        if headers.get("x-tc-action") != ACTION:
            raise _ApiError("InvalidAction", "The requested action does not exist.")
        if headers.get("x-tc-version") != VERSION:
            raise _ApiError("NoSuchVersion", "The requested version does not exist.")

    def _parse_params(self, body):
        try:
            params = json.loads(body)
        except ValueError:
            raise _ApiError("InvalidParameter", "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise _ApiError("InvalidParameter", "The request body must be a JSON object.")
        for name in ("CaptchaType", "Ticket", "UserIp", "Randstr", "CaptchaAppId", "AppSecretKey"):
            if name not in params:
                raise _ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
        if params["CaptchaType"] != 9:
            raise _ApiError("InvalidParameterValue", "CaptchaType must be 9.")
        if not isinstance(params["CaptchaAppId"], int):
            raise _ApiError("InvalidParameter", "CaptchaAppId must be an Integer.")
        return params

    def _describe_captcha_result(self, params):
        now = int(self.clock())
        with self._lock:
            code = self._judge_ticket(params, now)
        captcha_code, captcha_msg = code
        return {
            "CaptchaCode": captcha_code,
            "CaptchaMsg": captcha_msg,
            "EvilLevel": 0,
            "GetCaptchaTime": now if captcha_code == CODE_OK[0] else 0,
        }

    def _judge_ticket(self, params, now):
        if params["CaptchaAppId"] != self.app_id:
            return CODE_APPID_MISMATCH
        if params["AppSecretKey"] != self.app_secret_key:
            return CODE_APP_SECRET_MISMATCH
        ticket = params["Ticket"]
        if ticket in self._used_tickets:
            return CODE_TICKET_REUSED
        if ticket not in self._tickets:
            return CODE_TICKET_INVALID
        randstr, issued_at = self._tickets[ticket]
        if params["Randstr"] != randstr:
            return CODE_RANDSTR_MISMATCH
        if now - issued_at > TICKET_LIFETIME_SECONDS:
            return CODE_TICKET_EXPIRED
        del self._tickets[ticket]
        self._used_tickets.add(ticket)
        return CODE_OK

    @staticmethod
    def _send(handler, status, payload, content_type):
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests); nothing left to tell it
