"""Bodies a route does not declare, or text no database takes, are refused (422);
a query string is read the way browsers write it.

The schemas refuse unknown body fields themselves; this covers the places a route takes
no body at all (form fields next to an upload, a JSON body on a route without one), so
no body field is ever silently ignored. Routes behind a token are checked after the
token (401/403 come first).

A query string is written by browsers and libraries, not by the caller's hand: caches
add `_t=`, axios writes `type[]=a`, forms send empty fields. So a query key the route
does not declare is ignored, an empty value is no filter, and a list argument is read
from `k=a&k=b`, `k[]=a&k[]=b` and `k=a,b` alike (see `browser_query`).

Every value the parser hands to a schema (JSON body, query string, form) is first
checked for what no route can store or compare: NUL characters (PostgreSQL refuses
them in text), lone surrogates (they have no UTF-8 form) and JSON numbers past 64
bits (Python refuses to even read an integer of more than 4,300 digits). Each is a
422 naming the field, checked once here rather than in every schema.
"""

import json
import math
import re

from flask import current_app, request
from marshmallow import fields
from werkzeug.datastructures import MultiDict

from crm_app.common.errors import ValidationFailed

ODD_TEXT = re.compile("[\x00\ud800-\udfff]")
NUL_MESSAGE = "Must not contain NUL characters."
SURROGATE_MESSAGE = "Not valid text (a lone surrogate has no UTF-8 form)."
ODD_NAME_MESSAGE = "Field names must not contain NUL characters or lone surrogates."
NUMBER_MESSAGE = "Number out of range."
# Integers in a JSON body fit a signed 64-bit column, or no field takes them.
MAX_JSON_INTEGER = 2**63 - 1
MAX_JSON_INTEGER_DIGITS = len(str(MAX_JSON_INTEGER))


class OutOfRange:
    """A JSON integer too long to be read: kept as a marker so the field can be named."""

    __slots__ = ()


OUT_OF_RANGE = OutOfRange()


def parse_json_integer(text):
    if len(text.lstrip("-")) > MAX_JSON_INTEGER_DIGITS:
        return OUT_OF_RANGE
    return int(text)


def refuse_constant(name):
    """`NaN` and `Infinity` are not JSON (Python's reader accepts them)."""
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def load_json_text(text):
    """The JSON body, with numbers no field can take marked instead of failing."""
    return json.loads(text, parse_int=parse_json_integer, parse_constant=refuse_constant)


def text_error(value):
    match = ODD_TEXT.search(value)
    if match is None:
        return None
    return NUL_MESSAGE if match.group() == "\x00" else SURROGATE_MESSAGE


def shown_name(name):
    return ODD_TEXT.sub("\ufffd", name)


def odd_value_errors(value):
    """marshmallow-shaped errors (`{field: [messages]}`, lists by index) for every odd
    string, key or number inside a parsed JSON value; None when there is none."""
    if isinstance(value, str):
        message = text_error(value)
        return [message] if message else None
    if value is OUT_OF_RANGE:
        return [NUMBER_MESSAGE]
    if isinstance(value, float):
        return None if math.isfinite(value) else [NUMBER_MESSAGE]
    if isinstance(value, int) and not isinstance(value, bool):
        return None if -MAX_JSON_INTEGER - 1 <= value <= MAX_JSON_INTEGER else [NUMBER_MESSAGE]
    if isinstance(value, dict):
        errors = {}
        for key, item in value.items():
            if ODD_TEXT.search(key):
                errors[shown_name(key)] = [ODD_NAME_MESSAGE]
                continue
            found = odd_value_errors(item)
            if found:
                errors[key] = found
        return errors or None
    if isinstance(value, list):
        errors = {index: found for index, item in enumerate(value) if (found := odd_value_errors(item))}
        return errors or None
    return None


def odd_multidict_errors(values):
    """The same for a query string or form (every value of a repeated key)."""
    errors = {}
    for key, items in values.lists():
        if ODD_TEXT.search(key):
            errors[shown_name(key)] = [ODD_NAME_MESSAGE]
            continue
        for item in items:
            message = text_error(item) if isinstance(item, str) else None
            if message:
                errors[key] = [message]
                break
    return errors


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def declared_locations(handler):
    parameters = getattr(handler, "_apidoc", {}).get("arguments", {}).get("parameters", [])
    return {parameter["in"] for parameter in parameters}


def is_list_field(field):
    return isinstance(field, fields.List) and not isinstance(field.inner, fields.Nested)


def browser_query(args, schema):
    """The query arguments `schema` declares, as a browser or an HTTP library sends them.

    Keys the schema does not declare are dropped (cache-busters such as `_t=`, `page` on a
    route that does not page); an empty value is dropped (an empty form field is no filter);
    `k[]` is `k` (axios) and a list argument's `a,b` is two values. What is kept is what the
    schema reads, so its checks (and the refusal of text no database takes) still apply.
    """
    by_key = {field.data_key or name: field for name, field in schema.load_fields.items()}
    kept = MultiDict()
    for key, values in args.lists():
        if key not in by_key and key.endswith("[]") and key[:-2] in by_key:
            key = key[:-2]
        field = by_key.get(key)
        if field is None:
            continue
        for value in values:
            parts = [part.strip() for part in value.split(",")] if is_list_field(field) else [value]
            for part in parts:
                if part != "":
                    kept.add(key, part)
    return kept


def refuse_undeclared_arguments(handler, check_json=True):
    """Refuse a body the route takes none of (a query string is never refused: see
    `browser_query`)."""
    declared = declared_locations(handler)
    unknown = []
    if request.mimetype in FORM_TYPES and not declared & {"form", "json_or_form"}:
        unknown.extend(request.form)
    if check_json and request.is_json and not declared & {"json", "json_or_form"}:
        try:
            body = load_json_text(request.get_data(cache=True).decode("utf-8"))
        except (ValueError, RecursionError):  # not JSON we can read: no field to name
            body = None
        if isinstance(body, dict):
            unknown.extend(body)
    if unknown:
        raise ValidationFailed(errors={shown_name(name): ["Unknown field."] for name in unknown})


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
