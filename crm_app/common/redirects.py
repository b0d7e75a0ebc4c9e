"""Where we may send a browser: our own front ends' origins, or a path on this host.

A redirect target sent by a client (e.g. the e-verify `success_url`) is otherwise an
open redirect from the broker's own origin, a phishing helper.
"""

from crm_app.config import SIMULATOR_ENVS, has_unsafe_url_characters, normalise_origin


def allowed_origins(cfg):
    """FRONTEND_ORIGINS, plus PUBLIC_BASE_URL's origin in development and test."""
    configured = cfg.get("FRONTEND_ORIGINS") or ()
    if isinstance(configured, str):
        configured = configured.split(",")
    origins = {normalise_origin(item.strip()) for item in configured}
    if cfg.get("APP_ENV") in SIMULATOR_ENVS and cfg.get("PUBLIC_BASE_URL"):
        origins.add(normalise_origin(cfg["PUBLIC_BASE_URL"]))
    origins.discard(None)
    return origins


def is_relative_path(url):
    """`/kyc/done` on this host; not `//evil.com` or `/\\evil.com` (browsers read both as another host)."""
    return url.startswith("/") and not url.startswith("//")


def redirect_allowed(url, cfg):
    if not isinstance(url, str) or not url or has_unsafe_url_characters(url):
        return False
    if is_relative_path(url):
        return True
    origin = normalise_origin(url)
    return origin is not None and origin in allowed_origins(cfg)
