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
    if role is None:
        return {}, checks
    if operation.label in SESSION_ENDING:
        return world.fresh_user(role), checks
    return world.headers[role], checks


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
