"""Configuration from environment variables only (12-factor).

Every setting has a typed parser and a default that is safe for a first run on a
laptop. Outside development, missing secrets stop the process at start-up instead
of silently signing tokens with a guessable key.
"""

import os
import unicodedata
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the app refuses to start."""


def env_str(name, default=None):
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name, default):
    raw = env_str(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name, default):
    raw = env_str(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def env_bool(name, default=False):
    raw = env_str(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


DEFAULT_PORTS = {"http": 80, "https": 443}


def has_unsafe_url_characters(url):
    """Whitespace, control, format (bidi) characters or a backslash: browsers read such URLs
    differently from us (`https://a.com\\@evil.com`, a tab inside the scheme, a right-to-left override)."""
    return any(c == "\\" or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zs", "Zl", "Zp") for c in url)


def normalise_origin(url):
    """`scheme://host[:port]` of an http(s) URL (lower case, default port left out), or None.

    None for anything else: another scheme, user info (`https://a.com@evil.com`), no host,
    a host that is not plain ASCII, a bad port, control characters or backslashes.
    """
    if not isinstance(url, str) or not url or has_unsafe_url_characters(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in DEFAULT_PORTS or not url.lower().startswith(scheme + "://") or not host:
        return None
    if "@" in parts.netloc or not host.isascii():
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def env_origins(name):
    """Comma-separated origins (`https://portal.broker.com, http://localhost:3000`), normalised."""
    origins = []
    for item in (env_str(name) or "").split(","):
        item = item.strip()
        if not item:
            continue
        origin = normalise_origin(item)
        if origin is None or urlsplit(item).path not in ("", "/") or urlsplit(item).query or urlsplit(item).fragment:
            raise ConfigError(f"{name} takes origins such as https://portal.broker.com, got {item!r}")
        origins.append(origin)
    return tuple(origins)


def normalise_database_url(url):
    """Accept the URLs Heroku-style hosts hand out (`postgres://...`) as they are."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def default_sqlite_url():
    instance = PROJECT_ROOT / "instance"
    instance.mkdir(exist_ok=True)
    return f"sqlite:///{instance / 'crm.db'}"


def load_config(overrides=None):
    """Build the Flask config mapping from the environment (and test overrides)."""
    overrides = dict(overrides or {})
    app_env = overrides.get("APP_ENV") or env_str("APP_ENV", "production")
    if app_env not in ("development", "production", "test"):
        raise ConfigError("APP_ENV must be development, production or test")

    database_url = normalise_database_url(env_str("DATABASE_URL") or default_sqlite_url())
    cfg = {
        "APP_ENV": app_env,
        "SECRET_KEY": env_str("SECRET_KEY"),
        "JWT_SECRET_KEY": env_str("JWT_SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": database_url,
        # Pre-ping costs a round trip on every request. By default only a connection
        # that sat idle in the pool longer than DATABASE_POOL_PING_IDLE_SECONDS is pinged
        # (a restarted database is noticed there); one in steady use is not, and if the
        # database dropped it, a request's first statement runs again on a new one.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": env_bool("DATABASE_POOL_PRE_PING", False)},
        "DATABASE_POOL_PING_IDLE_SECONDS": env_float("DATABASE_POOL_PING_IDLE_SECONDS", 1.0),
        "REDIS_URL": env_str("REDIS_URL"),
        # Tokens
        "JWT_ALGORITHM": "HS256",
        "JWT_DECODE_ALGORITHMS": ["HS256"],
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15)),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=env_int("JWT_REFRESH_DAYS", 14)),
        "JWT_TOKEN_LOCATION": ["headers"],
        # Password hashing (argon2id). Tests lower the cost; production keeps it strong.
        "ARGON2_TIME_COST": env_int("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_COST": env_int("ARGON2_MEMORY_COST", 65536),
        "ARGON2_PARALLELISM": env_int("ARGON2_PARALLELISM", 4),
        # Throttles
        "LOGIN_MAX_FAILURES": env_int("LOGIN_MAX_FAILURES", 5),
        "LOGIN_FAILURE_WINDOW_SECONDS": env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900),
        "LOGIN_MAX_FAILURES_PER_IP": env_int("LOGIN_MAX_FAILURES_PER_IP", 30),
        # Sign-in hardening. LOGIN_MAX_FAILURES locks one (account, address) pair; failures for
        # one account from all addresses together past this ask for a captcha ticket (when
        # captcha is configured) instead of locking the owner out.
        "LOGIN_CAPTCHA_AFTER_FAILURES": env_int("LOGIN_CAPTCHA_AFTER_FAILURES", 10),
        # Passwords: refuse those an attacker guesses in fewer than 10**this tries (0: no estimate)
        "PASSWORD_MIN_GUESSES_LOG10": env_float("PASSWORD_MIN_GUESSES_LOG10", 8.0),
        # TOTP two-factor: the issuer shown in authenticator apps, codes accepted either side
        # of the current 30 s step, recovery codes handed out at enrolment
        "OTP_ISSUER": env_str("OTP_ISSUER", "Forex broker CRM"),
        "OTP_VALID_WINDOW": env_int("OTP_VALID_WINDOW", 1),
        "OTP_RECOVERY_CODES": env_int("OTP_RECOVERY_CODES", 10),
        # Requests per user to each money route (deposit, submit, withdrawal, transfer) per window
        "MONEY_THROTTLE_MAX_REQUESTS": env_int("MONEY_THROTTLE_MAX_REQUESTS", 60),
        "MONEY_THROTTLE_WINDOW_SECONDS": env_int("MONEY_THROTTLE_WINDOW_SECONDS", 60),
        # Email codes
        "EMAIL_CODE_TTL_SECONDS": env_int("EMAIL_CODE_TTL_SECONDS", 600),
        "EMAIL_CODE_RESEND_SECONDS": env_int("EMAIL_CODE_RESEND_SECONDS", 60),
        "EMAIL_CODE_MAX_ATTEMPTS": env_int("EMAIL_CODE_MAX_ATTEMPTS", 5),
        "EMAIL_CODE_CLOCK_SKEW_SECONDS": env_int("EMAIL_CODE_CLOCK_SKEW_SECONDS", 300),
        # Email codes asked for from one IP address per hour (any address, any scene)
        "EMAIL_CODE_MAX_PER_IP_HOUR": env_int("EMAIL_CODE_MAX_PER_IP_HOUR", 30),
        # Mail
        "MAIL_SERVER": env_str("MAIL_SERVER"),
        "MAIL_PORT": env_int("MAIL_PORT", 25),
        "MAIL_USE_TLS": env_bool("MAIL_USE_TLS", False),
        "MAIL_USE_SSL": env_bool("MAIL_USE_SSL", False),
        "MAIL_USERNAME": env_str("MAIL_USERNAME"),
        "MAIL_PASSWORD": env_str("MAIL_PASSWORD"),
        "MAIL_DEFAULT_SENDER": env_str("MAIL_DEFAULT_SENDER", "no-reply@broker.example"),
        "MAIL_TIMEOUT_SECONDS": env_int("MAIL_TIMEOUT_SECONDS", 10),
        # Tencent Cloud captcha
        "CAPTCHA_ENABLED": env_bool("CAPTCHA_ENABLED", False),
        "CAPTCHA_APP_ID": env_int("CAPTCHA_APP_ID", 0),
        "CAPTCHA_APP_SECRET_KEY": env_str("CAPTCHA_APP_SECRET_KEY"),
        "TENCENTCLOUD_SECRET_ID": env_str("TENCENTCLOUD_SECRET_ID"),
        "TENCENTCLOUD_SECRET_KEY": env_str("TENCENTCLOUD_SECRET_KEY"),
        "CAPTCHA_ENDPOINT": env_str("CAPTCHA_ENDPOINT", "https://captcha.tencentcloudapi.com"),
        "CAPTCHA_REGION": env_str("CAPTCHA_REGION", ""),
        "CAPTCHA_TIMEOUT_SECONDS": env_int("CAPTCHA_TIMEOUT_SECONDS", 5),
        # Electronic identity verification. The built-in simulator vendor (`sim`) exists only in
        # development and test, where it is the default; production has no default (off).
        "EVERIFY_PROVIDER": everify_provider(app_env),
        # Origins (scheme://host[:port], comma-separated) the e-verify success/failed URLs may point
        # at; relative paths are always allowed. Development and test add PUBLIC_BASE_URL's origin.
        "FRONTEND_ORIGINS": env_origins("FRONTEND_ORIGINS"),
        "EVERIFY_SIM_SECRET": env_str("EVERIFY_SIM_SECRET"),
        "EVERIFY_SESSION_TTL_SECONDS": env_int("EVERIFY_SESSION_TTL_SECONDS", 1800),
        "EVERIFY_MAX_ATTEMPTS": env_int("EVERIFY_MAX_ATTEMPTS", 5),
        "EVERIFY_SIGNATURE_TOLERANCE_SECONDS": env_int("EVERIFY_SIGNATURE_TOLERANCE_SECONDS", 300),
        # Deposit drafts never submitted expire after this
        "DEPOSIT_DRAFT_TTL_HOURS": env_int("DEPOSIT_DRAFT_TTL_HOURS", 24),
        # Internal transfers up to this amount need no review
        "TRANSFER_AUTO_APPROVE_MAX": env_str("TRANSFER_AUTO_APPROVE_MAX", "1000.00"),
        # Exports
        "EXPORT_LINK_TTL_HOURS": env_int("EXPORT_LINK_TTL_HOURS", 24),
        "EXPORT_PDF_MAX_ROWS": env_int("EXPORT_PDF_MAX_ROWS", 20000),
        "EXPORT_MAX_ACTIVE_PER_USER": env_int("EXPORT_MAX_ACTIVE_PER_USER", 5),
        # Trading-data sync (windows, overlap at the edges, lease, retries)
        "SYNC_WINDOW_SECONDS": env_int("SYNC_WINDOW_SECONDS", 6 * 3600),
        "SYNC_OVERLAP_SECONDS": env_int("SYNC_OVERLAP_SECONDS", 600),
        "SYNC_LOGIN_BATCH": env_int("SYNC_LOGIN_BATCH", 100),
        "SYNC_LEASE_SECONDS": env_int("SYNC_LEASE_SECONDS", 300),
        "SYNC_RETRY_ATTEMPTS": env_int("SYNC_RETRY_ATTEMPTS", 4),
        "SYNC_RETRY_DELAY_MS": env_int("SYNC_RETRY_DELAY_MS", 200),
        "SYNC_BACKFILL_MARGIN_SECONDS": env_int("SYNC_BACKFILL_MARGIN_SECONDS", 86400),
        "SYNC_FIGURES_MAX_AGE_SECONDS": env_int("SYNC_FIGURES_MAX_AGE_SECONDS", 3600),
        # Trading servers
        "TRADING_TIMEOUT_SECONDS": env_int("TRADING_TIMEOUT_SECONDS", 10),
        # The admin's check of a trading server: each call's bound (a check answers while the admin waits).
        "TRADING_CHECK_TIMEOUT_SECONDS": env_float("TRADING_CHECK_TIMEOUT_SECONDS", 5.0),
        # Uploads
        "UPLOAD_FOLDER": env_str("UPLOAD_FOLDER", str(PROJECT_ROOT / "instance" / "uploads")),
        "UPLOAD_MAX_BYTES": env_int("UPLOAD_MAX_BYTES", 10 * 1024 * 1024),
        # Quotas per user: uploads per rolling hour and bytes per rolling day (429 with Retry-After),
        # demo accounts open at once and live-account applications waiting for review (422).
        "UPLOAD_MAX_PER_HOUR": env_int("UPLOAD_MAX_PER_HOUR", 30),
        "UPLOAD_MAX_BYTES_PER_DAY": env_int("UPLOAD_MAX_BYTES_PER_DAY", 100 * 1024 * 1024),
        "DEMO_ACCOUNTS_MAX_OPEN": env_int("DEMO_ACCOUNTS_MAX_OPEN", 3),
        "LIVE_APPLICATIONS_MAX_PENDING": env_int("LIVE_APPLICATIONS_MAX_PENDING", 1),
        # A trading server whose free logins fall below this share of its range is flagged to admins.
        "LOGIN_RANGE_WARN_RATIO": env_float("LOGIN_RANGE_WARN_RATIO", 0.10),
        # An Idempotency-Key whose request left no answer this long ago is judged by what the
        # database says it did (longer than any request lives: gunicorn's --timeout is 30).
        "IDEMPOTENCY_STALE_SECONDS": env_int("IDEMPOTENCY_STALE_SECONDS", 120),
        # A review item claimed this long ago by a request that never finished (nor could
        # record a failure) may be approved or rejected again.
        "REVIEW_CLAIM_STALE_SECONDS": env_int("REVIEW_CLAIM_STALE_SECONDS", 120),
        # OpenAPI / Swagger UI (assets served by the app itself: no CDN)
        "API_TITLE": "Forex broker CRM",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "api/v1/openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "/swagger-ui-assets/",
        "OPENAPI_SWAGGER_UI_CONFIG": {"persistAuthorization": True},
        "PUBLIC_BASE_URL": env_str("PUBLIC_BASE_URL"),
        # The public registration page an IB's referral link and QR code point at; `{code}` is the IB's code.
        "IB_REFERRAL_URL": env_str("IB_REFERRAL_URL", "http://127.0.0.1:5000/register?invite_code={code}"),
        # Number of reverse proxies in front (Heroku's router: 1) whose X-Forwarded-* we trust.
        "TRUSTED_PROXY_COUNT": env_int("TRUSTED_PROXY_COUNT", 0),
        "MIGRATIONS_DIR": PROJECT_ROOT / "migrations",
        "JSON_SORT_KEYS": False,
    }
    cfg.update(overrides)
    cfg["MAX_CONTENT_LENGTH"] = cfg["UPLOAD_MAX_BYTES"] + 64 * 1024
    check_secrets(cfg)
    check_everify(cfg)
    return cfg


# Where the e-verify simulator vendor exists (it verifies anyone who presses Pass).
SIMULATOR_ENVS = ("development", "test")
PROVIDER_OFF = ("off", "none")


def everify_provider(app_env):
    """The e-verify vendor's name, or None (off): `sim` by default only where the simulator exists."""
    raw = env_str("EVERIFY_PROVIDER")
    if raw is None:
        return "sim" if app_env in SIMULATOR_ENVS else None
    raw = raw.strip().lower()
    return None if raw in PROVIDER_OFF else raw


def check_everify(cfg):
    provider = cfg.get("EVERIFY_PROVIDER")
    if provider == "sim" and cfg["APP_ENV"] not in SIMULATOR_ENVS:
        raise ConfigError(
            "Refusing to start: EVERIFY_PROVIDER=sim is the built-in simulator, which approves anyone; it exists "
            "only with APP_ENV=development or test. Configure a real vendor or leave EVERIFY_PROVIDER unset (off)."
        )


def check_secrets(cfg):
    missing = [name for name in ("SECRET_KEY", "JWT_SECRET_KEY") if not cfg.get(name)]
    if not missing:
        return
    if cfg["APP_ENV"] == "production":
        raise ConfigError(
            "Refusing to start: set " + " and ".join(missing) + " (or APP_ENV=development for a local run)"
        )
    for name in missing:
        # Development and tests only: a fixed, obviously unsafe value.
        cfg[name] = f"insecure-{cfg['APP_ENV']}-{name.lower()}-not-for-production-use"
