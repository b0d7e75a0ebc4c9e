"""Input a route does not declare is refused (422), wherever it is sent.

The schemas refuse unknown fields themselves; this covers the places a route takes
nothing from at all (a query string on a route without query arguments, form fields
next to an upload, a JSON body on a route without one), so no input is ever silently
ignored. Routes behind a token are checked after the token (401/403 come first).
"""

from flask import current_app, request

from crm_app.common.errors import ValidationFailed

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def declared_locations(handler):
    parameters = getattr(handler, "_apidoc", {}).get("arguments", {}).get("parameters", [])
    return {parameter["in"] for parameter in parameters}


def refuse_undeclared_arguments(handler, check_json=True):
    declared = declared_locations(handler)
    unknown = []
    if "query" not in declared:
        unknown.extend(request.args)
    if request.mimetype in FORM_TYPES and not declared & {"form", "json_or_form"}:
        unknown.extend(request.form)
    if check_json and request.is_json and not declared & {"json", "json_or_form"}:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            unknown.extend(body)
    if unknown:
        raise ValidationFailed(errors={name: ["Unknown field."] for name in unknown})


def operation_handler():
    view = current_app.view_functions.get(request.endpoint)
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return view
    method = request.method.lower()
    return getattr(view_class, method, None) or (getattr(view_class, "get", None) if method == "head" else None)


def refuse_undeclared_arguments_of_public_routes():
    """A `before_request` of every API blueprint. Public routes that read a raw body
    (signed webhooks) declare none, so their JSON is left to them."""
    handler = operation_handler()
    if handler is None or getattr(handler, "requires_login", False) or not hasattr(handler, "_apidoc"):
        return
    refuse_undeclared_arguments(handler, check_json=False)
