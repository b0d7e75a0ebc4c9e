"""Caching and transport headers every answer gets, from one `after_request` hook.

API answers carry tokens, KYC data and full bank numbers: no cache (a browser's, a
proxy's) may keep them. A route that may be cached says so itself (the referral QR
code, Swagger UI's assets) and keeps its own `Cache-Control`. An answer to a request
that arrived over HTTPS (directly, or through a proxy counted in `TRUSTED_PROXY_COUNT`:
ProxyFix sets the scheme only from those) tells the browser to keep to HTTPS.
"""

from flask import request

API_PREFIX = "/api/"
NO_STORE = "no-store"
HSTS = "max-age=31536000; includeSubDomains"


def add_security_headers(response):
    headers = response.headers
    if "Cache-Control" not in headers and (request.path.startswith(API_PREFIX) or "Authorization" in request.headers):
        headers["Cache-Control"] = NO_STORE
    if request.scheme == "https":
        headers["Strict-Transport-Security"] = HSTS
    return response


def register_security_headers(app):
    app.after_request(add_security_headers)
