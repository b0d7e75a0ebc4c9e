"""The OpenAPI document and the self-hosted Swagger UI (no CDN: air-gapped back offices)."""

import copy
import re
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from marshmallow import validate

OPERATIONS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
BEARER = [{"bearerAuth": []}]
# Public, and reads a bearer token when one is sent (`{}`: anonymous is allowed too).
OPTIONAL_BEARER = [{"bearerAuth": []}, {}]
OPTIONAL_BEARER_ROUTES = {("POST", "/api/v1/auth/email-code")}

# Every route issue 2 delivers (method, path; path parameters by position only).
ISSUE_2_ROUTES = {
    ("POST", "/api/v1/auth/password"),  # 1
    ("POST", "/api/v1/auth/login"),  # 2
    ("GET", "/api/v1/auth/permissions"),  # 3
    ("GET", "/api/v1/menus"),  # 4
    ("POST", "/api/v1/captcha/verify"),  # 5
    ("POST", "/api/v1/auth/email-code"),  # 6
    ("GET", "/api/v1/config/login-page"),  # 7
    ("GET", "/api/v1/config/broker"),  # 8
    ("GET", "/api/v1/currencies"),  # 9
    ("GET", "/api/v1/client/permissions"),  # 12
    ("POST", "/api/v1/auth/register"),  # 29
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("PUT", "/api/v1/admin/config/login-page"),
    ("PUT", "/api/v1/admin/config/broker"),
    ("GET", "/api/v1/admin/currencies"),
    ("POST", "/api/v1/admin/currencies"),
    ("GET", "/api/v1/admin/currencies/{}"),
    ("PUT", "/api/v1/admin/currencies/{}"),
    ("DELETE", "/api/v1/admin/currencies/{}"),
    ("POST", "/api/v1/uploads"),
    ("GET", "/api/v1/uploads/{}"),
    ("GET", "/api/v1/admin/users"),
    ("POST", "/api/v1/admin/users"),
    ("GET", "/api/v1/admin/users/{}"),
    ("PATCH", "/api/v1/admin/users/{}"),
    ("GET", "/api/v1/admin/audit-logs"),
}

PUBLIC_ROUTES = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/email-code"),
    ("POST", "/api/v1/captcha/verify"),
    ("GET", "/api/v1/config/login-page"),
    ("GET", "/api/v1/config/broker"),
    ("GET", "/api/v1/currencies"),
}

SWAGGER_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")


@pytest.fixture
def document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    return response.get_json()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in OPERATIONS:
                yield method.upper(), path, operation


def shape(path):
    return re.sub(r"\{[^}]+\}", "{}", path)


def walk(node, where="#"):
    """Every dict inside the document, with a JSON-pointer-like location."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{where}/{index}")


def null_keywords(document):
    return [f"{where}/{key}" for where, node in walk(document) for key, value in node.items() if value is None]


# The document -----------------------------------------------------------------------


def test_openapi_document_validates(document):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


def test_openapi_document_validates_apart_from_null_datetime_keywords(document):
    """Everything else in the document is valid (guards what the xfail above hides)."""
    validator = pytest.importorskip("openapi_spec_validator")
    cleaned = copy.deepcopy(document)
    for _, node in walk(cleaned):
        if node.get("type") == "string" and ("format" in node or "pattern" in node):
            for key in ("format", "pattern"):
                if key in node and node[key] is None:
                    del node[key]
    validator.validate(cleaned)


def test_openapi_document_has_no_null_keywords(document):
    assert null_keywords(document) == []


def test_every_property_of_every_schema_has_a_type(document):
    """A client generated from the document gets a type for every field: values worked out
    at dump time (#9 `name`, #13 `server_*`, #20 `fee`, #23 `icon`, #47 `leverage_options`,
    ...) and form values say what they are instead of rendering as `{}`."""
    untyped = []
    for where, node in walk(document["components"]["schemas"], "#/components/schemas"):
        for name, prop in (node.get("properties") or {}).items():
            if not any(key in prop for key in ("type", "$ref", "allOf", "anyOf", "oneOf")):
                untyped.append(f"{where}/properties/{name}")
    assert untyped == []


def test_computed_objects_are_documented_with_their_schema(client, document):
    """#9 `name` and #47 `leverage_options` are objects in the document as on the wire."""
    schemas = document["components"]["schemas"]
    name = schemas["Currency"]["properties"]["name"]
    assert name["type"] == "object"
    assert name["allOf"] == [{"$ref": "#/components/schemas/CurrencyName"}]
    assert set(schemas["CurrencyName"]["properties"]) == {"en", "zh"}
    options = schemas["AccountType"]["properties"]["leverage_options"]
    assert options["type"] == "array" and options["items"] == {"$ref": "#/components/schemas/LeverageOption"}
    assert {key: value["type"] for key, value in schemas["LeverageOption"]["properties"].items()} == {
        "id": "integer",
        "value": "integer",
    }
    for schema, field in (("Balance", "trading_account"), ("Deposit", "remittance_name"), ("DepositChannel", "fee")):
        assert schemas[schema]["properties"][field]["type"] == "string", (schema, field)


def test_openapi_document_is_openapi_3_with_title_and_version(document):
    assert document["openapi"].startswith("3.0")
    assert document["info"]["title"]
    assert document["info"]["version"] == "v1"


def test_bearer_security_scheme_is_declared(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    # No document-wide requirement: public operations must stay public.
    assert "security" not in document


def test_every_issue_2_route_is_in_the_document(document):
    documented = {(method, shape(path)) for method, path, _ in operations(document)}
    missing = sorted(ISSUE_2_ROUTES - documented)
    assert not missing, missing


def is_public(operation):
    """No security, or a requirement list that allows anonymous calls (`{}`)."""
    return not operation.get("security") or {} in operation["security"]


def test_public_operations_declare_no_security(document):
    for method, path, operation in operations(document):
        key = (method, shape(path))
        if key in OPTIONAL_BEARER_ROUTES:
            assert operation.get("security") == OPTIONAL_BEARER, (method, path)
        elif key in PUBLIC_ROUTES:
            assert not operation.get("security"), (method, path)


def test_protected_operations_of_issue_2_declare_bearer_auth(document):
    for method, path, operation in operations(document):
        key = (method, shape(path))
        if key in ISSUE_2_ROUTES and key not in PUBLIC_ROUTES:
            assert operation.get("security") == BEARER, (method, path)


def call_without_token(client, method, path):
    concrete = re.sub(r"\{[^}]+\}", "1", path)
    kwargs = {} if method in ("GET", "DELETE", "HEAD") else {"json": {}}
    return client.open(concrete, method=method, **kwargs)


def test_documented_security_matches_what_each_route_enforces(client, document):
    """Every operation that answers 401 without a token declares bearerAuth, and every
    operation that declares it does answer 401 without one."""
    mismatches = []
    for method, path, operation in operations(document):
        response = call_without_token(client, method, path)
        enforced = response.status_code == 401
        declared = operation.get("security") == BEARER
        if enforced != declared:
            mismatches.append((method, path, response.status_code, operation.get("security")))
    assert not mismatches, mismatches


def test_public_routes_are_exactly_the_documented_ones_without_security(document):
    public = {(m, shape(p)) for m, p, op in operations(document) if is_public(op)}
    issue_2_public = public & ISSUE_2_ROUTES
    assert issue_2_public == PUBLIC_ROUTES


def resolve(document, node):
    while isinstance(node, dict) and "$ref" in node:
        target = document
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def error_schema_of(document, response):
    return resolve(document, response)["content"]["application/json"]["schema"]


def test_every_operation_documents_the_error_shape(document):
    """Operations taking a body or a query document 422; every operation's default
    answer is the one error shape."""
    error_ref = {"$ref": "#/components/schemas/Error"}
    for method, path, operation in operations(document):
        if (method, shape(path)) not in ISSUE_2_ROUTES:
            continue
        responses = operation["responses"]
        assert error_schema_of(document, responses["default"]) == error_ref, (method, path)
        takes_input = "requestBody" in operation or any(p.get("in") == "query" for p in operation.get("parameters", []))
        if takes_input:
            assert "422" in responses, (method, path)
            assert error_schema_of(document, responses["422"]) == error_ref, (method, path)
    error = document["components"]["schemas"]["Error"]["properties"]
    assert set(error) == {"code", "status", "message", "errors"}


def test_every_operation_lists_the_errors_of_its_kind(document):
    """Each status a client can meet is listed, not only covered by `default`: 401/403
    where a token is needed, 404 where the path names an object, 400/422 for a body,
    422 for query arguments; each in the one error shape."""
    error_ref = {"$ref": "#/components/schemas/Error"}
    missing = []
    for method, path, operation in operations(document):
        responses = operation["responses"]
        expected = set()
        if operation.get("security"):
            expected |= {"401", "403"}
        if "{" in path:
            expected.add("404")
        if "requestBody" in operation:
            expected |= {"400", "422"}
        if any(p.get("in") == "query" for p in operation.get("parameters", [])):
            expected.add("422")
        for status in sorted(expected):
            if status not in responses:
                missing.append((method, path, status))
            elif error_schema_of(document, responses[status]) != error_ref:
                missing.append((method, path, status, "not the error shape"))
    assert not missing, missing


def test_path_ids_are_bounded_by_the_database_integer(document):
    """A path id past PostgreSQL's `integer` is no row (404), and the document says so."""
    for method, path, operation in operations(document):
        item = document["paths"][path]
        for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
            schema = parameter.get("schema", {})
            if parameter.get("in") == "path" and schema.get("type") == "integer":
                assert schema.get("maximum") == 2**31 - 1, (method, path, parameter)


def test_a_body_without_required_fields_is_optional(document):
    """A body whose fields are all optional may be left out; the document must not
    call it required (a client would be refused for something the route accepts)."""
    wrong = []
    for method, path, operation in operations(document):
        body = operation.get("requestBody")
        if not body:
            continue
        for media in body["content"].values():
            schema = resolve(document, media["schema"])
            if body.get("required") and not schema.get("required"):
                wrong.append((method, path))
    assert not wrong, wrong


def test_json_numbers_and_booleans_are_not_coerced(client, factory):
    """100.5 is not an integer, 1 is not true and "7" is not a number in a JSON body;
    an id past the database's integer is refused before it reaches PostgreSQL."""
    admin = factory.admin()
    headers = factory.headers(client, admin)
    for body in (
        {"code": "ABC", "name_en": "A", "name_zh": "A", "methods": [], "sort_order": 1.5},
        {"code": "ABC", "name_en": "A", "name_zh": "A", "methods": [], "enabled": 1},
        {"code": "ABC", "name_en": "A", "name_zh": "A", "methods": [], "sort_order": "7"},
    ):
        response = client.post("/api/v1/admin/currencies", headers=headers, json=body)
        assert response.status_code == 422, (body, response.get_json())
    response = client.get("/api/v1/admin/users?parent_ib_id=2147483648", headers=headers)
    assert response.status_code == 422, response.get_json()
    assert "parent_ib_id" in response.get_json()["errors"]
    assert client.get("/api/v1/admin/users/2147483648", headers=headers).status_code == 404


def bad_bounds(document):
    """`minimum`/`maximum` (and exclusive ones) that are not JSON numbers."""
    found = []
    for where, node in walk(document):
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key in node:
                value = node[key]
                if key.startswith("exclusive") and document["openapi"].startswith("3.0"):
                    ok = isinstance(value, bool)
                else:
                    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if not ok:
                    found.append((f"{where}/{key}", value))
        if node.get("type") == "string" and ("minimum" in node or "maximum" in node):
            found.append((where, "minimum/maximum on a string schema"))
    return found


def test_no_schema_renders_an_invalid_minimum_or_maximum(document):
    assert bad_bounds(document) == []


def test_money_and_decimal_fields_render_valid_bounds(app):
    """What a later capability gets when it bounds an amount: the app's own field
    registrations, rendered through its own JSON provider, stay valid OpenAPI."""
    import json

    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    from crm_app.common.schemas import Money, Schema, register_field_types

    plugin = MarshmallowPlugin()
    spec = APISpec("probe", "1", "3.0.3", plugins=[plugin])

    class FakeApi:
        def register_field(self, field, *args):
            plugin.map_to_openapi_type(field, *args)

    register_field_types(FakeApi())

    class AmountSchema(Schema):
        amount = Money(required=True, validate=validate.Range(min=Decimal("0.01"), max=Decimal("1000000")))
        rate = Money(places=8)

    spec.components.schema("Amount", schema=AmountSchema)
    rendered = json.loads(app.json.dumps(spec.to_dict()))
    amount = rendered["components"]["schemas"]["Amount"]["properties"]["amount"]
    assert amount["type"] == "string"
    assert amount.get("format") == "decimal"
    assert bad_bounds(rendered) == []
    assert null_keywords(rendered) == []
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(rendered)


def test_money_schemas_in_the_document_are_decimal_strings(document):
    for where, node in walk(document):
        if node.get("format") == "decimal":
            assert node.get("type") == "string", where
            assert bad_bounds({"openapi": document["openapi"], "n": node}) == [], where


def test_every_operation_has_a_summary_and_unique_operation_path(document):
    seen = set()
    for method, path, operation in operations(document):
        if (method, shape(path)) in ISSUE_2_ROUTES:
            assert operation.get("summary"), (method, path)
        key = (method, shape(path))
        assert key not in seen, key
        seen.add(key)


# Swagger UI ---------------------------------------------------------------------------


class AssetCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.urls.append(attrs["src"])


def docs_page(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    collector = AssetCollector()
    collector.feed(html)
    return html, collector.urls


def is_local(url):
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc


def test_swagger_ui_references_only_local_assets(client):
    html, urls = docs_page(client)
    assert urls, html
    remote = [url for url in urls if not is_local(url)]
    assert not remote, remote
    # Nothing else in the page reaches out either (inline config, preloads, fonts).
    assert not re.search(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", html), html
    referenced = {urlsplit(url).path.rsplit("/", 1)[-1] for url in urls}
    assert set(SWAGGER_ASSETS) <= referenced


def test_every_swagger_ui_asset_is_served_by_the_app(client):
    _, urls = docs_page(client)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.get_data()
        assert len(body) > 1000, url
        if url.endswith(".css"):
            assert response.mimetype == "text/css", url
        if url.endswith(".js"):
            assert "javascript" in response.mimetype, url
            # The bundle itself must not fetch code from a CDN at run time.
            assert b"unpkg.com" not in body and b"cdn.jsdelivr.net" not in body, url


def test_swagger_ui_loads_the_local_openapi_document(client):
    html, _ = docs_page(client)
    match = re.search(r'url:\s*"([^"]+)"', html)
    assert match, html
    assert is_local(match.group(1))
    assert client.get(match.group(1)).status_code == 200


def test_swagger_ui_keeps_authorization_between_reloads(client):
    html, _ = docs_page(client)
    assert '"persistAuthorization": true' in html


@pytest.mark.parametrize(
    "path",
    [
        "/swagger-ui-assets/../../setup.cfg",
        "/swagger-ui-assets/%2e%2e/%2e%2e/setup.cfg",
        "/swagger-ui-assets/..%2f..%2fsetup.cfg",
        "/swagger-ui-assets/no-such-asset.js",
    ],
)
def test_swagger_ui_asset_route_serves_nothing_outside_its_folder(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert b"install_requires" not in response.get_data()


def test_bad_asset_answers_in_the_error_shape(client):
    response = client.get("/swagger-ui-assets/no-such-asset.js")
    assert response.status_code == 404
    assert set(response.get_json()) == {"code", "status", "message", "errors"}
