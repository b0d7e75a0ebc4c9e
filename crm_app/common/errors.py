"""Typed domain errors raised by services, and the one error shape they map to.

Every error response is `{code, status, message, errors}`: `code` is a stable
machine-readable string, `status` the HTTP status, `message` human text in the
caller's language, `errors` per-field details (empty when there are none).
"""


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, code=None, errors=None, status=None, message=None, headers=None):
        super().__init__(code or self.code)
        if code:
            self.code = code
        if status:
            self.status = status
        self.errors = errors or {}
        self.message = message
        self.headers = headers or {}


class ValidationFailed(DomainError):
    """Input is well-formed but breaks a rule: 422."""

    status = 422
    code = "validation_error"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class TooManyRequests(DomainError):
    status = 429
    code = "too_many_requests"

    def __init__(self, retry_after, code=None, errors=None):
        retry_after = max(1, int(retry_after))
        super().__init__(code=code, errors=errors, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    status = 503
    code = "service_unavailable"
