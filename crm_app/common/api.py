"""flask-smorest subclassed once: our error shape, strict argument parsing, bearer auth."""

import functools
import http
import json
import logging

import jwt as pyjwt
import marshmallow as ma
from apispec import BasePlugin
from flask import current_app, g, request
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.local import LocalProxy
from werkzeug.routing import IntegerConverter, UnicodeConverter

from crm_app.common.i18n import translate, translate_field_errors
from crm_app.common.schemas import MAX_DB_ID
from crm_app.common.strict_args import browser_query, load_json_text, odd_multidict_errors, odd_value_errors

log = logging.getLogger(__name__)

CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


class ErrorSchema(ma.Schema):
    """The one error shape of every non-2xx answer."""

    code = ma.fields.String(metadata={"description": "Stable machine-readable error code"})
    status = ma.fields.Integer(metadata={"description": "HTTP status"})
    message = ma.fields.String(metadata={"description": "Human message in the Accept-Language language"})
    errors = ma.fields.Dict(metadata={"description": "Per-field errors"})


def error_body(status, code=None, message=None, errors=None):
    code = code or CODE_BY_STATUS.get(status, "error")
    return {
        "code": code,
        "status": status,
        "message": message or translate(code, default=translate(CODE_BY_STATUS.get(status, "bad_request"))),
        "errors": translate_field_errors(errors or {}),
    }


def flatten_location_errors(messages):
    """webargs keys errors by location ({"json": {...}}); callers want the fields."""
    if not isinstance(messages, dict):
        return {"_schema": messages}
    if set(messages) <= {"json", "query", "form", "files", "headers", "view_args", "path"}:
        flat = {}
        for location_errors in messages.values():
            if isinstance(location_errors, dict):
                flat.update(location_errors)
            else:
                flat.setdefault("_schema", []).extend(location_errors)
        return flat
    return messages


class ErrorResponsesPlugin(BasePlugin):
    """Documents the errors every operation of a kind can answer, so each status a
    client may see is listed (not only covered by `default`): 401/403 where a token is
    required, 404 where the path names an object, 400/422 where input is parsed."""

    def operation_helper(self, path=None, operations=None, **kwargs):
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            for status, name in self.statuses(path, operation):
                responses.setdefault(status, name)

    @staticmethod
    def statuses(path, operation):
        if operation.get("security"):
            yield "401", "UNAUTHORIZED"
            yield "403", "FORBIDDEN"
        if "{" in (path or ""):
            yield "404", "NOT_FOUND"
        takes_query = any(p.get("in") == "query" for p in operation.get("parameters", []) if isinstance(p, dict))
        if "requestBody" in operation:
            yield "400", "BAD_REQUEST"
        if "requestBody" in operation or takes_query:
            yield "422", "UNPROCESSABLE_ENTITY"


class BrowserQueryPlugin(BasePlugin):
    """An optional query parameter sent empty is no filter (see `browser_query`): the
    document says so with `allowEmptyValue`, so a client generated from it may send one."""

    def operation_helper(self, path=None, operations=None, **kwargs):
        for operation in (operations or {}).values():
            for parameter in operation.get("parameters", []):
                if isinstance(parameter, dict) and parameter.get("in") == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True


class DatabaseIdConverter(IntegerConverter):
    """`<int:...>` names a row: a number past PostgreSQL's `integer` is no row (404),
    not a query that fails in the database; and it is ASCII digits (werkzeug's own
    pattern and int() read `١٢` as 12)."""

    regex = r"[0-9]+"

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_DB_ID, signed=False):  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class PlainTextConverter(UnicodeConverter):
    """A text path segment never holds a NUL (PostgreSQL refuses it in text): such a
    path names no object (404), rather than a query that fails in the database."""

    def __init__(self, map, minlength=1, maxlength=None, length=None):  # noqa: A002
        super().__init__(map, minlength=minlength, maxlength=maxlength, length=length)
        self.regex = self.regex.replace("[^/]", "[^/\\x00]")


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app, *, spec_kwargs=None):
        app.url_map.converters["int"] = DatabaseIdConverter
        app.url_map.converters["default"] = app.url_map.converters["string"] = PlainTextConverter
        spec_kwargs = dict(spec_kwargs or {})
        spec_kwargs["extra_plugins"] = [
            *spec_kwargs.get("extra_plugins", ()),
            ErrorResponsesPlugin(),
            BrowserQueryPlugin(),
        ]
        super().init_app(app, spec_kwargs=spec_kwargs)

    def handle_http_exception(self, error):
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        if errors is not None:
            errors = flatten_location_errors(errors)
        status = error.code or 500
        code = data.get("code")
        if status == 500:
            original = getattr(error, "original_exception", None)
            if original is not None:
                log.exception("unhandled error", exc_info=original)
        body = error_body(status, code=code, message=data.get("message"), errors=errors)
        # Werkzeug's own headers (Allow on 405, Retry-After on 429) would be lost otherwise.
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        headers.update(data.get("headers") or {})
        return body, status, headers

    def _register_error_handlers(self):
        super()._register_error_handlers()
        from crm_app.common.errors import DomainError

        def handle_domain_error(error):
            body = error_body(error.status, code=error.code, message=error.message, errors=error.errors)
            return body, error.status, error.headers

        self._app.register_error_handler(DomainError, handle_domain_error)


class StrictFlaskParser(FlaskParser):
    """Let each schema's own `unknown = RAISE` apply to bodies; a query string is read as
    browsers write it (undeclared keys and empty values left out, `k[]` and `a,b` lists)."""

    DEFAULT_UNKNOWN_BY_LOCATION = {}

    def _raw_load_json(self, req):
        # Bodies that parse but cannot be handled (nested past the recursion limit) are
        # bad JSON: 400, not 500. Text no database takes and numbers no field takes are
        # refused naming the field (see strict_args).
        if not is_json_request(req):
            return core.missing
        try:
            data = load_json_text(req.get_data(cache=True).decode("utf-8"))
            errors = odd_value_errors(data)
        except RecursionError:
            raise json.JSONDecodeError("JSON nested too deeply", "<body>", 0) from None
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"Bytes decoding error: {exc.reason}", "<body>", exc.start) from None
        if errors:
            raise ma.ValidationError(errors)
        return data

    def load_querystring(self, req, schema):
        args = browser_query(req.args, schema)
        refuse_odd_text(args)
        return self._makeproxy(args, schema)

    def load_form(self, req, schema):
        refuse_odd_text(req.form)
        return super().load_form(req, schema)


def refuse_odd_text(values):
    errors = odd_multidict_errors(values)
    if errors:
        raise ma.ValidationError(errors)


ROLE_MEMBERS = {
    "any": {"client", "ib", "admin"},
    # An IB is also a client: it may use every client route.
    "client": {"client", "ib"},
    "ib": {"ib"},
    "admin": {"admin"},
}


BODY_LOCATIONS = ("json", "form", "files", "json_or_form")


def has_required_field(schema):
    instance = schema() if isinstance(schema, type) else schema
    return any(field.required for field in instance.fields.values())


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = StrictFlaskParser(unknown=None)

    def __init__(self, *args, **kwargs):
        from crm_app.common.strict_args import refuse_undeclared_arguments_of_public_routes

        super().__init__(*args, **kwargs)
        self.before_request(refuse_undeclared_arguments_of_public_routes)

    def error_responses(self, *statuses):
        """Document the errors an operation answers beyond the ones every operation of
        its kind gets (see ErrorResponsesPlugin): 409, 429, 503..."""

        def decorator(func):
            for status in statuses:
                if status == 429:
                    func = self.alt_response(
                        429,
                        schema=ErrorSchema,
                        description="Too many attempts; retry after `Retry-After` seconds",
                        headers={"Retry-After": {"schema": {"type": "integer"}, "required": True}},
                    )(func)
                else:
                    func = self.alt_response(status, http.HTTPStatus(status).name)(func)
            return func

        return decorator

    def arguments(self, schema, *, location="json", required=None, **kwargs):
        """A body is documented as required only when it has a required field: a body
        whose fields are all optional may be left out, and the route accepts that."""
        if required is None:
            required = location not in BODY_LOCATIONS or has_required_field(schema)
        return super().arguments(schema, location=location, required=required, **kwargs)

    def login_required(self, role="any", otp_enrolment=False):
        """Require a valid access token whose user has `role`; documents bearer auth.

        An admin who must still turn on two-factor sign-in (broker setting
        `require_admin_otp`) reaches only the routes marked `otp_enrolment`: a token issued
        so says it, and any other admin token is checked against the setting as it is now
        (switching it on restricts sessions that already exist).
        """
        from crm_app.auth.otp import must_enrol
        from crm_app.common.errors import Forbidden
        from crm_app.common.strict_args import refuse_undeclared_arguments

        allowed = ROLE_MEMBERS[role]

        def decorator(func):
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                user = verify_access_token()
                if user.status != "enabled":
                    raise Forbidden(code="user_disabled")
                if user.user_type not in allowed:
                    raise Forbidden()
                if not otp_enrolment and (
                    g.token_claims.get("otp_enrol") or (user.user_type == "admin" and must_enrol(user))
                ):
                    raise Forbidden(code="otp_enrolment_required")
                refuse_undeclared_arguments(func)
                return func(*args, **kwargs)

            wrapper.requires_login = True
            wrapper = self.doc(security=[{"bearerAuth": []}], **{"x-roles": sorted(allowed)})(wrapper)
            return wrapper

        return decorator

    def login_optional(self):
        """A public route that also serves a signed-in caller: a bearer token, when sent,
        is checked as on any route (a bad one is a 401) and its user becomes
        `current_user`; without one `current_user` is None. Other Authorization schemes
        (a proxy's Basic auth) are not ours and are left alone. Documents the token as
        optional."""
        from crm_app.common.errors import Forbidden

        def decorator(func):
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                scheme, _, _ = request.headers.get("Authorization", "").partition(" ")
                if scheme.lower() == "bearer":
                    user = verify_access_token()
                    if user.status != "enabled":
                        raise Forbidden(code="user_disabled")
                    if g.token_claims.get("otp_enrol"):
                        raise Forbidden(code="otp_enrolment_required")
                return func(*args, **kwargs)

            return self.doc(security=[{"bearerAuth": []}, {}])(wrapper)

        return decorator


def verify_access_token():
    """The bearer access token, decoded once, and its user, loaded with one query.

    flask-jwt-extended issues the tokens; checking them here costs a quarter of its
    path on every request (it parses each token four times).
    """
    from crm_app.auth.services import load_token_user
    from crm_app.common.errors import Unauthorized

    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    cfg = current_app.config
    try:
        payload = pyjwt.decode(
            token,
            cfg["JWT_SECRET_KEY"],
            algorithms=cfg["JWT_DECODE_ALGORITHMS"],
            options={"require": ["exp", "sub", "jti", "type"]},
        )
    except pyjwt.ExpiredSignatureError:
        raise Unauthorized(code="token_expired") from None
    except pyjwt.InvalidTokenError:
        raise Unauthorized(code="token_invalid") from None
    if payload.get("type") != "access":
        raise Unauthorized(code="token_invalid")
    user = load_token_user(payload)
    if user is None:
        raise Unauthorized(code="token_revoked")
    g.token_claims = payload
    g.token_user = user
    return user


def current_token_claims():
    return g.token_claims


# The signed-in user of the current request (set by `login_required`).
current_user = LocalProxy(lambda: g.get("token_user"))


def register_security_scheme(api):
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})


def current_app_config(name, default=None):
    return current_app.config.get(name, default)
