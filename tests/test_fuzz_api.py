"""Every documented operation, fuzzed from the app's own OpenAPI document.

Schemathesis generates requests from `/api/v1/openapi.json` (valid and invalid ones) for
every operation and sends each as every role the operation admits (a client, an IB, an
admin; public operations without a token), and once as a role it refuses. Each answer
must not be a 5xx, must use a status code the operation documents explicitly (not only
through `default`), and must match the documented content type and schema.

The world the requests land in is built once for the module: the demo broker, trading
servers on the simulator, and a client under an IB who own funded trading accounts, a
transfer, a payout account and an upload. Generated ids are often swapped for the
caller's own ids so that successful answers get checked too, not only 404s.
"""

import io
import itertools
import os
from decimal import Decimal

import pytest
import sqlalchemy as sa

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import empty_database_and_redis  # noqa: E402
from tests.support.factory import Factory  # noqa: E402
from tests.support.trading import GOOD_PASSWORD  # noqa: E402

# Enough to find the odd input that breaks an operation, small enough for CI:
# about 120 operations, each sent as one to three roles.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "8"))

ROLES = ("client", "ib", "admin")
SERIAL = itertools.count(1)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@schemathesis.check
def status_code_documented_explicitly(ctx, response, case):
    """`default` documents the error shape; every status actually answered is listed too."""
    if case.method.upper() != case.operation.method.upper():
        return None  # a method the path does not have: 405 is the answer, not an operation's
    responses = case.operation.definition.raw.get("responses", {})
    status = str(response.status_code)
    if status not in responses and f"{status[0]}XX" not in responses:
        raise AssertionError(
            f"{case.operation.label} answered {status}, documented: {sorted(responses)}; body: {response.text[:300]}"
        )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    status_code_documented_explicitly,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# The world -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_state():
    """The fuzzed world is built once for the whole module (see `world`), not per test."""
    yield


def mint_headers(user):
    """A fresh sign-in for `user`, without the (throttled, fuzzed) login route."""
    from crm_app.auth.services import issue_tokens, start_session
    from crm_app.extensions import db

    session = start_session(user, None)
    tokens = issue_tokens(user, session)
    db.session.commit()
    return {"Authorization": f"Bearer {tokens['token']}"}


class World:
    def __init__(self, app):
        self.app = app
        self.http = app.test_client()
        self.user_ids = {}
        self.headers = {}
        # role -> {resource: [ids the role may see]}
        self.ids = {role: {} for role in ROLES}

    def call(self, method, path, role="admin", expect=(200, 201), **kwargs):
        response = self.http.open(path, method=method, headers=self.headers[role], **kwargs)
        assert response.status_code in expect, (method, path, response.status_code, response.get_json())
        return response.get_json() if response.is_json else None

    def own(self, role, resource, value):
        self.ids[role].setdefault(resource, []).append(value)

    def scratch(self, kind):
        """A new admin-side object of `kind`, for an operation that changes or deletes
        one: the fuzz may do anything to it without touching the shared world."""
        # Hypothesis seeds `random` per example: names come from a counter instead.
        body = scratch_body(kind, next(SERIAL), self)
        return self.call("POST", f"/api/v1/admin/{kind}", json=body)["id"]

    def fresh_user(self, role):
        """A token of a user of its own, for operations that end sessions."""
        return self._fresh(role)[1]

    def fresh_user_id(self, role):
        """A user of its own, for operations that change or disable one."""
        return self._fresh(role)[0]

    def _fresh(self, role):
        from crm_app.admin.services import create_user

        with self.app.app_context():
            user = create_user(
                {
                    "email": f"fuzz-{role}-{next(SERIAL)}@example.test",
                    "password": "Quartz-Lantern-58",
                    "user_type": role,
                    "parent_ib_id": self.user_ids["ib"] if role == "client" else None,
                },
                actor=None,
                client=None,
            )
            return user.id, mint_headers(user)


def scratch_body(kind, tag, world):
    if kind == "currencies":
        return {"code": f"Q{tag:05d}", "name_en": "Scratch", "name_zh": "Scratch", "methods": ["bank_transfer"]}
    if kind == "trading-servers":
        return {
            "name": f"Scratch {tag}",
            "platform": "MT5",
            "is_demo": True,
            "base_url": world.sim.server_url("mt5-demo"),
            "manager_login": world.sim.manager_login,
            "manager_password": world.sim.manager_password,
            "next_login": 7000000 + 100 * tag,
            "last_login": 7000099 + 100 * tag,
        }
    if kind == "trading-account-types":
        return {
            "name": f"Scratch {tag}",
            "server_id": world.ids["admin"]["trading_server"][0],
            "mt_group": "demo\\scratch",
            "leverage_options": [100],
        }
    if kind == "platforms":
        return {"name": f"Scratch {tag}"}
    if kind in ("deposit-channels", "withdrawal-channels"):
        return {
            "method": "bank_transfer",
            "name": f"Scratch {tag}",
            "allowed_currencies": ["USD"],
            "min_amount": "10.00",
            "max_amount": "5000.00",
        }
    if kind == "rebate-rules":
        return {"name": f"Scratch {tag}", "mode": "per_lot", "level_amounts": ["1.0000"], "symbol_pattern": "ZZZ*"}
    if kind == "kyc/questionnaires":
        return {"name": f"Scratch {tag}", "is_enabled": False, "questions": []}
    raise AssertionError(kind)


@pytest.fixture(scope="module")
def world(app, sim, smtp_sink):
    from crm_app.admin.services import create_user
    from crm_app.broker.services import update_setting
    from crm_app.demo import seed_demo
    from crm_app.extensions import db
    from crm_app.trading.models import TradingAccount
    from crm_app.trading.services import gateway_for

    empty_database_and_redis(app)
    world = World(app)
    world.sim = sim
    simulator = {
        "MT_SIMULATOR_URL": sim.base_url,
        "MT_SIMULATOR_MANAGER_LOGIN": str(sim.manager_login),
        "MT_SIMULATOR_MANAGER_PASSWORD": sim.manager_password,
    }
    previous = {name: os.environ.get(name) for name in simulator}
    os.environ.update(simulator)
    try:
        with app.app_context():
            seed_demo()
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    with app.app_context():
        from crm_app.trading.models import TradingServer

        world.ids["admin"]["trading_server"] = list(db.session.scalars(sa.select(TradingServer.id)))
        update_setting("broker", {"email_code_required": {"transfer": False, "withdrawal": False}})
        for role in ("admin", "ib", "client"):
            user = create_user(
                {
                    "email": f"fuzz-{role}@example.test",
                    "password": "Quartz-Lantern-58",
                    "user_type": role,
                    "parent_ib_id": world.user_ids["ib"] if role == "client" else None,
                },
                actor=None,
                client=None,
            )
            world.user_ids[role] = user.id
            world.own("admin", "user", user.id)
            world.headers[role] = mint_headers(user)
            if role != "admin":
                # Money moves only through a verified client's live accounts.
                Factory(app).approved_kyc(user, first_name="Fuzz", last_name=role.title())

    live_type = world.call("GET", "/api/v1/client/trading-account-types?is_demo=false&trading_platform=MT5", "client")
    live_type_id = live_type["list"][0]["id"]
    for role in ("client", "ib"):
        for _ in range(2):
            world.call(
                "POST",
                "/api/v1/client/account-applications",
                role,
                json={
                    "currency": "USD",
                    "leverage": 100,
                    "password": GOOD_PASSWORD,
                    "trading_account_type_id": live_type_id,
                    "trading_platform": "MT5",
                },
            )
            item = world.call("GET", "/api/v1/admin/audits?type=account_application&status=pending")["list"][0]
            opened = world.call("POST", f"/api/v1/admin/audits/{item['id']}/approve", json={})
            account = {"id": opened["object"]["trading_account_id"]}
            for who in {role, "admin"}:
                world.own(who, "trading_account", account["id"])
        with app.app_context():
            row = db.session.get(TradingAccount, account["id"])
            gateway_for(row.server).balance_operation(row.login, Decimal("5000.00"), f"DEP#fuzz{row.login}")
        upload = world.call(
            "POST",
            "/api/v1/uploads",
            role,
            data={"file": (io.BytesIO(PNG), "receipt.png")},
            content_type="multipart/form-data",
        )
        world.own(role, "upload", upload["id"])
        payout = world.call(
            "POST",
            "/api/v1/client/payment-accounts",
            role,
            json={
                "payment_method": "bank_transfer",
                "bank_transfer_info": {
                    "bank_country": "GB",
                    "bank_name": "Demo Bank",
                    "bank_no": "GB33BUKB20201555555555",
                    "branch_name": "City",
                    "bsc_code": "20-20-15",
                },
            },
        )
        world.own(role, "payment_account", payout["id"])
        first, funded = world.ids[role]["trading_account"][-2:]
        world.call(
            "POST",
            "/api/v1/client/transfers",
            role,
            json={
                "amount": "10.00",
                "remark": "fuzz",
                "source_trading_account_id": funded,
                "target_trading_account_id": first,
            },
        )
    return world


def rendered_document():
    """The document as the app serves it, rendered once at collection so each operation
    is a test of its own (no database or Redis is touched to render it)."""
    from crm_app import create_app

    document_app = create_app(
        {
            "APP_ENV": "test",
            "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://unused@127.0.0.1:1/unused",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "TESTING": True,
        }
    )
    response = document_app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


schema = schemathesis.openapi.from_dict(rendered_document())
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)


# The fuzz --------------------------------------------------------------------------


def allowed_roles(operation):
    return operation.definition.raw.get("x-roles") or [None]


# Paths that name one of the caller's objects, and the kind of object.
OWN_OBJECT_PATHS = {
    "/api/v1/client/trading-accounts/{account_id}": "trading_account",
    "/api/v1/admin/users/{user_id}": "user",
    "/api/v1/client/payment-accounts/{account_id}": "payment_account",
    "/api/v1/uploads/{upload_id}": "upload",
}

# Operations that end the caller's sessions: each example gets a user of its own.
SESSION_ENDING = {"POST /api/v1/auth/logout", "POST /api/v1/auth/password"}


def scratch_kind(operation):
    """The admin object kind an operation changes or deletes by id, if any."""
    path = operation.path
    if operation.method.upper() not in ("PUT", "PATCH", "DELETE") or "{" not in path:
        return None
    if not path.startswith("/api/v1/admin/"):
        return None
    return path[len("/api/v1/admin/") : path.index("/{")]


def prepare(case, world, role):
    """The headers to send as `role` and the checks to run, after pointing destructive
    operations at objects (and users) of their own."""
    operation = case.operation
    checks = CHECKS
    kind = scratch_kind(operation)
    if kind is not None:
        (name,) = [p for p in case.path_parameters or {}] or [None]
        if name is not None:
            if kind == "users":
                value = world.fresh_user_id("client")
            else:
                value = world.scratch(kind)
            case.path_parameters[name] = value
            # The request is no longer the one generated: an invalid one may now be valid.
            checks = [check for check in CHECKS if check is not negative_data_rejection]
    # Only reads point at shared objects; changes get objects of their own (above).
    resource = OWN_OBJECT_PATHS.get(operation.path) if operation.method.upper() == "GET" else None
    own = world.ids.get(role, {}).get(resource) if resource else None
    if own and case.path_parameters:
        (name,) = case.path_parameters
        value = case.path_parameters[name]
        # Two generated ids in three become one of the caller's own: 200s get checked too.
        pick = len(value) if isinstance(value, str) else value
        if isinstance(pick, int) and not isinstance(pick, bool) and pick % 3 != 2:
            case.path_parameters[name] = own[pick % len(own)]
            checks = [check for check in CHECKS if check is not negative_data_rejection]
    if undocumented_query_keys(case):
        # Query keys an operation does not read are ignored by design (caches add `_t=`):
        # the negation schemathesis meant is not one the service refuses.
        checks = [check for check in checks if check is not negative_data_rejection]
    if role is None:
        return {}, checks
    if operation.label in SESSION_ENDING:
        return world.fresh_user(role), checks
    return world.headers[role], checks


def undocumented_query_keys(case):
    documented = {p["name"] for p in case.operation.definition.raw.get("parameters", []) if p.get("in") == "query"}
    return [key for key in case.query or {} if key not in documented]


def assert_world_token_still_valid(response, headers, label):
    sent = response.request.headers.get("Authorization")
    if response.status_code == 401 and sent and sent == headers.get("Authorization"):
        raise AssertionError(f"{label}: a token the rest of the run uses was refused (revoked by an earlier call?)")


refused_checked = set()


@schema.parametrize()
def test_operation_answers_as_documented(case, world):
    operation = case.operation
    roles = allowed_roles(operation)
    for role in roles:
        headers, checks = prepare(case, world, role)
        response = case.call_and_validate(headers=headers, checks=checks, app=world.app)
        if role is not None and operation.label not in SESSION_ENDING:
            assert_world_token_still_valid(response, headers, operation.label)
    refused = [r for r in ROLES if roles != [None] and r not in roles]
    if refused and operation.label not in refused_checked:
        refused_checked.add(operation.label)
        response = case.call(headers=world.headers[refused[0]], app=world.app)
        assert response.status_code in (401, 403, 404, 422), (operation.label, response.status_code)
        case.validate_response(response, checks=CHECKS, transport_kwargs={"app": world.app})


# Odd values, deterministically ------------------------------------------------------------
#
# Generated examples rarely hold a NUL, a lone surrogate, a digit that is not ASCII or an
# integer Python refuses to read. This pass sends each of them in every query parameter,
# path parameter, header parameter and JSON string or number field of every operation (one slot at a time,
# the rest of the request as plausible as the document allows), as each role the
# operation admits; nothing may answer 5xx, and text no database takes is refused.

DOCUMENT = rendered_document()
HUGE_DIGITS = "9" * 5000  # past Python's 4,300-digit limit for int()
ODD_TEXT = ["\x00", "a\x00b", "\ud800", "²", "١٠٠", "１００"]
# Text PostgreSQL cannot store (NUL) or UTF-8 cannot carry (a lone surrogate).
UNSTORABLE = {"\x00", "a\x00b", "\ud800"}
# A header is Latin-1 on the wire: the odd values it can carry.
ODD_HEADER_VALUES = ["\x00", "a\x00b", "²", "\xa0"]
ODD_NUMBERS = [HUGE_DIGITS, str(2**63), str(2**31), "-" + HUGE_DIGITS]
PATTERN_CANDIDATES = ["USD", "10.00", "2024-01-01 00:00:00", "123456", "abc", "x", "https://example.test", "GB"]


def resolve(schema):
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = DOCUMENT["components"]["schemas"][name]
    if isinstance(schema, dict) and "allOf" in schema:
        merged = {}
        for part in schema["allOf"]:
            merged.update(resolve(part))
        return merged
    return schema or {}


def plausible(schema):
    """A value the schema likely takes: enough to get past validation to the service."""
    import re

    schema = resolve(schema)
    if "enum" in schema:
        return schema["enum"][0]
    if "example" in schema:
        return schema["example"]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {name: plausible(properties[name]) for name in schema.get("required", []) if name in properties}
    if kind == "array":
        return [plausible(schema.get("items", {}))] if schema.get("minItems") else []
    if kind == "integer" or kind == "number":
        return max(schema.get("minimum", 1), 1) if schema.get("maximum", 1) >= 1 else schema.get("minimum", 0)
    if kind == "boolean":
        return True
    if schema.get("format") == "decimal":
        return "10.00"
    if schema.get("format") == "email":
        return "odd@example.test"
    pattern = schema.get("pattern")
    if pattern:
        for candidate in PATTERN_CANDIDATES:
            if re.search(pattern, candidate):
                return candidate
    return "x" * max(schema.get("minLength", 1), 1)


def body_slots(schema, path=()):
    """(path, kind) of every string or number leaf of a JSON body schema."""
    schema = resolve(schema)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        for name, child in schema.get("properties", {}).items():
            if not resolve(child).get("readOnly"):
                yield from body_slots(child, (*path, name))
        if schema.get("additionalProperties") not in (None, False) or not schema.get("properties"):
            yield (*path, "k"), "string"
    elif kind == "array":
        yield from body_slots(schema.get("items", {}), (*path, 0))
    elif kind in ("string", "integer", "number"):
        yield path, kind


def with_value(body, path, value):
    """`body` with `value` at `path` (objects and lists made on the way)."""
    import copy

    body = copy.deepcopy(body) if body is not None else {}
    node = body
    for step, following in zip(path, path[1:], strict=False):
        if isinstance(node, list):
            while len(node) <= step:
                node.append({} if isinstance(following, str) else [])
            if not isinstance(node[step], dict | list):
                node[step] = {} if isinstance(following, str) else []
            node = node[step]
        else:
            if not isinstance(node.get(step), dict | list):
                node[step] = {} if isinstance(following, str) else []
            node = node[step]
    last = path[-1]
    if isinstance(node, list):
        while len(node) <= last:
            node.append(None)
    node[last] = value
    return body


NUMBER_MARK = "\x01odd-number\x01"


def json_text(body, number=None):
    """The body as JSON text; a number too big for Python's JSON writer goes in as text."""
    import json

    text = json.dumps(body)
    if number is not None:
        text = text.replace(json.dumps(NUMBER_MARK), number)
    return text


def quoted(value):
    from urllib.parse import quote

    return quote(str(value), safe="", errors="surrogatepass")


def channel_id(world, role, kind):
    """The first deposit or withdrawal channel the role sees (the demo broker's)."""
    key = f"{kind}_channel"
    if key not in world.ids[role]:
        listed = world.call("GET", f"/api/v1/client/{kind}-channels", role)["list"]
        world.ids[role][key] = [listed[0]["id"]] if listed else [1]
    return world.ids[role][key][0]


BANK_INFO = {
    "bank_country": "GB",
    "bank_name": "Demo Bank",
    "bank_no": "GB33BUKB20201555555555",
    "branch_name": "City",
    "bsc_code": "20-20-15",
}


def money_baselines(world, role):
    """Bodies the client's money routes take, so an odd value in one field reaches the
    service and the database (a generic body would be refused before either)."""
    if role not in ("client", "ib"):
        return {}
    own = world.ids[role]
    source, target = own["trading_account"][-1], own["trading_account"][0]
    return {
        "POST /api/v1/client/deposits": {
            "deposit_amount": "100.00",
            "remittance_id": channel_id(world, role, "deposit"),
            "trading_account_id": target,
            "remark": "fuzz",
        },
        "POST /api/v1/client/transfers": {
            "amount": "1.00",
            "remark": "fuzz",
            "source_trading_account_id": source,
            "target_trading_account_id": target,
        },
        "POST /api/v1/client/withdrawals": {
            "method": "bank_transfer",
            "remittance_id": channel_id(world, role, "withdrawal"),
            "trading_account_id": source,
            "withdrawal_amount": "50.00",
            "fee": "0.00",
            "exchange_rate": "1",
            "remittance_amount": "50.00",
            "currency": "USD",
            "remark": "fuzz",
            "bank_transfer_info": BANK_INFO,
        },
        "POST /api/v1/client/payment-accounts": {"payment_method": "bank_transfer", "bank_transfer_info": BANK_INFO},
        "POST /api/v1/client/kyc/e-verify/sessions": {"success_url": "/done", "failed_url": "/failed"},
        "PUT /api/v1/client/kyc": {"current_module": "identity", "kyc_data": {"identity": {"first_name": "Odd"}}},
        "PUT /api/v1/ib/rebate-payout-account": {"trading_account_id": source},
    }


class OddRequests:
    """Every odd request of one operation: (label, path, query string, JSON text, form, unstorable,
    headers)."""

    def __init__(self, path, method, operation):
        self.path, self.method, self.operation = path, method.upper(), operation
        parameters = operation.get("parameters", [])
        self.path_parameters = [p for p in parameters if p.get("in") == "path"]
        self.query_parameters = [p for p in parameters if p.get("in") == "query"]
        self.header_parameters = [p for p in parameters if p.get("in") == "header"]
        content = operation.get("requestBody", {}).get("content", {})
        self.json_schema = content.get("application/json", {}).get("schema")
        self.form_schema = content.get("application/x-www-form-urlencoded", {}).get("schema")

    def base_query(self):
        return {p["name"]: plausible(p.get("schema", {})) for p in self.query_parameters if p.get("required")}

    def query_string(self, query):
        return "&".join(f"{quoted(k)}={quoted(str(v).lower() if isinstance(v, bool) else v)}" for k, v in query.items())

    def requests(self, path_values, base_body=None):
        path = self.path
        for name, value in path_values.items():
            path = path.replace("{" + name + "}", quoted(value))
        base_query = self.base_query()
        if base_body is None and self.json_schema:
            base_body = plausible(self.json_schema)
        base_form = plausible(self.form_schema) if self.form_schema else None

        def request(
            label, path=path, query=base_query, body=None, number=None, form=base_form, unstorable=False, headers=None
        ):
            text = json_text(body if body is not None else base_body, number) if self.json_schema else None
            return label, path, self.query_string(query), text, form, unstorable, headers or {}

        for parameter in self.header_parameters:
            for value in ODD_HEADER_VALUES:
                yield request(f"header {parameter['name']}={value!r}", headers={parameter["name"]: value})

        for parameter in self.path_parameters:
            for value in ODD_TEXT:
                odd_path = self.path
                for name, own in path_values.items():
                    odd_path = odd_path.replace("{" + name + "}", quoted(value if name == parameter["name"] else own))
                yield request(f"path {parameter['name']}={value!r}", path=odd_path)
        for parameter in self.query_parameters:
            for value in ODD_TEXT + ODD_NUMBERS:
                query = {**base_query, parameter["name"]: value}
                # A surrogate's bytes in a URL are no UTF-8: they arrive as U+FFFD, which is fine.
                yield request(f"query {parameter['name']}={value[:12]!r}", query=query, unstorable="\x00" in value)
        if self.json_schema:
            for slot, kind in body_slots(self.json_schema):
                for value in ODD_TEXT:
                    body = with_value(base_body, slot, value)
                    yield request(f"json {slot}={value!r}", body=body, unstorable=value in UNSTORABLE)
                if kind in ("integer", "number"):
                    for value in ODD_NUMBERS:
                        body = with_value(base_body, slot, NUMBER_MARK)
                        yield request(f"json {slot}={value[:12]}", body=body, number=value)
        if self.form_schema:
            for name in resolve(self.form_schema).get("properties", {}):
                for value in ODD_TEXT:
                    form = {**(base_form or {}), name: value}
                    yield request(f"form {name}={value!r}", form=form, unstorable=value in UNSTORABLE)


def odd_operations():
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield pytest.param(path, method, operation, id=f"{method.upper()} {path}")


def odd_path_values(world, path, method, role, kind):
    """The caller's own object (or a scratch one) where the path names one, else 1."""
    values = {}
    for name in (segment[1:-1] for segment in path.split("/") if segment.startswith("{")):
        own = world.ids.get(role, {}).get(OWN_OBJECT_PATHS.get(path, ""), [])
        if kind == "users":
            values[name] = world.fresh_user_id("client")
        elif kind is not None:
            values[name] = world.scratch(kind)
        elif own:
            values[name] = own[0]
        else:
            values[name] = 1
    return values


@pytest.mark.parametrize(("path", "method", "operation"), list(odd_operations()))
def test_odd_values_in_every_slot_never_answer_5xx(world, path, method, operation):
    """NUL, a lone surrogate, `²`, `١٠٠`, `１００` and integers past 64 bits (and past Python's
    4,300 digits) in each parameter and body field, as each role the operation admits."""
    odd = OddRequests(path, method, operation)
    label = f"{method.upper()} {path}"
    roles = operation.get("x-roles") or [None]
    kind = scratch_kind(type("Operation", (), {"path": path, "method": method})())
    failures = []
    for role in roles:
        headers = {}
        if role is not None:
            headers = world.fresh_user(role) if label in SESSION_ENDING else world.headers[role]
        path_values = odd_path_values(world, path, method, role, kind)
        base_body = money_baselines(world, role).get(label)
        for slot, url, query, text, form, unstorable, extra_headers in odd.requests(path_values, base_body):
            kwargs = {"headers": {**headers, **extra_headers}, "query_string": query}
            if text is not None:
                kwargs.update(data=text.encode("utf-8", "surrogatepass"), content_type="application/json")
            elif form is not None:
                encoded = "&".join(f"{quoted(k)}={quoted(v)}" for k, v in form.items())
                kwargs.update(data=encoded, content_type="application/x-www-form-urlencoded")
            try:
                response = world.http.open(url, method=method.upper(), **kwargs)
            except Exception as exc:  # the test app lets a 500's exception through
                failures.append(f"{role} {slot}: raised {exc!r}"[:300])
                continue
            if response.status_code >= 500 or (unstorable and response.status_code < 400):
                failures.append(f"{role} {slot}: {response.status_code} {response.get_data(as_text=True)[:200]}")
    assert not failures, f"{label}:\n" + "\n".join(failures[:20])
