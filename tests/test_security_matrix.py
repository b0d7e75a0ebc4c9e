"""The security matrix: every route of the API contract, checked for who may call it.

For each route the table says which role it is for; the tests then call it without a
token (401), with a token of the wrong role (403), with tokens revoked by a logout or by
a password change (401), with an unknown field in its body (422; an unknown query key
is ignored, as browsers and caches add them), and - for
routes that reach an object owned by a user - with another user's object (404, exactly
like an object that does not exist). Public routes answer without a token. Every refusal
is in the one error shape {code, status, message, errors}.

The table is kept here (not read from the contract document) and a test checks that it
names every operation of the app's own OpenAPI document, so a new route cannot be
forgotten.
"""

import functools
import io
import re
from dataclasses import dataclass, field

import pytest

from tests.conftest import IsolatedClient, empty_database_and_redis
from tests.support.factory import PASSWORD, Factory
from tests.support.trading import GOOD_PASSWORD, book_counter

ERROR_KEYS = {"code", "status", "message", "errors"}
UNKNOWN = "zz_not_a_field"
NEW_PASSWORD = "Changed-Passw0rd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

PUBLIC, ANY, CLIENT, IB, ADMIN, REFRESH, SIGNED = "public", "any", "client", "ib", "admin", "refresh", "signed"
# Who must be refused (403) on a route for each role.
WRONG_ROLES = {CLIENT: ("admin",), IB: ("client", "admin"), ADMIN: ("client", "ib")}
# Who calls a route when it should get past the role check.
RIGHT_ROLE = {ANY: "client", CLIENT: "client", IB: "ib", ADMIN: "admin"}


@dataclass(frozen=True)
class Route:
    """One operation. `seed` is its number in the contract's seed table (None: beyond the seed)."""

    method: str
    path: str
    role: str
    seed: int | None = None
    params: dict = field(default_factory=dict)  # path parameter -> key in the world
    body: str | None = None  # "json", "multipart", "form" or None
    query: bool = False  # takes query arguments
    public_status: int | None = None  # what a public route answers a bare request

    @property
    def id(self):
        return f"{self.method} {self.path}"


def crud(resource, id_key):
    """An admin configuration resource: list, create, read, update, delete."""
    base = f"/api/v1/admin/{resource}"
    one = f"{base}/{{object_id}}"
    params = {"object_id": id_key}
    return [
        Route("GET", base, ADMIN, query=True),
        Route("POST", base, ADMIN, body="json"),
        Route("GET", one, ADMIN, params=params),
        Route("PUT", one, ADMIN, params=params, body="json"),
        Route("DELETE", one, ADMIN, params=params),
    ]


def report(name, seed_list, seed_export, role=ANY):
    return [
        Route("GET", f"/api/v1/reports/{name}", role, seed=seed_list, query=True),
        Route("POST", f"/api/v1/reports/{name}/export", role, seed=seed_export, body="json"),
    ]


ROUTES = [
    # Seed operations (#1-#59)
    Route("POST", "/api/v1/auth/password", ANY, seed=1, body="json"),
    Route("POST", "/api/v1/auth/login", PUBLIC, seed=2, body="json", public_status=422),
    Route("GET", "/api/v1/auth/permissions", ANY, seed=3),
    Route("GET", "/api/v1/menus", ANY, seed=4),
    Route("POST", "/api/v1/captcha/verify", PUBLIC, seed=5, body="json", public_status=422),
    Route("POST", "/api/v1/auth/email-code", PUBLIC, seed=6, body="json", public_status=422),
    Route("GET", "/api/v1/config/login-page", PUBLIC, seed=7, public_status=200),
    Route("GET", "/api/v1/config/broker", PUBLIC, seed=8, public_status=200),
    Route("GET", "/api/v1/currencies", PUBLIC, seed=9, query=True, public_status=200),
    *report("withdrawals", 11, 10),
    Route("GET", "/api/v1/client/permissions", CLIENT, seed=12),
    Route("GET", "/api/v1/client/balances", CLIENT, seed=13, query=True),
    Route("POST", "/api/v1/client/account-applications", CLIENT, seed=14, body="json"),
    Route("POST", "/api/v1/client/transfers", CLIENT, seed=15, body="json"),
    Route("GET", "/api/v1/client/transfers", CLIENT, seed=16, query=True),
    Route("POST", "/api/v1/client/kyc/e-verify/sessions", CLIENT, seed=17, body="json"),
    Route("PUT", "/api/v1/client/kyc/questionnaire", CLIENT, seed=18, body="json"),
    Route("GET", "/api/v1/client/platforms", CLIENT, seed=19),
    Route("GET", "/api/v1/client/deposit-channels", CLIENT, seed=20, query=True),
    Route("POST", "/api/v1/client/deposits", CLIENT, seed=21, body="json"),
    Route("POST", "/api/v1/client/deposits/submit", CLIENT, seed=22, body="json"),
    Route("GET", "/api/v1/client/deposits", CLIENT, seed=23, query=True),
    Route("GET", "/api/v1/client/withdrawals", CLIENT, seed=24, query=True),
    Route("GET", "/api/v1/client/withdrawal-channels", CLIENT, seed=25, query=True),
    Route("POST", "/api/v1/client/withdrawals", CLIENT, seed=26, body="json"),
    Route("GET", "/api/v1/client/kyc", CLIENT, seed=27),
    Route("GET", "/api/v1/client/kyc/form", CLIENT, seed=28),
    Route("POST", "/api/v1/auth/register", PUBLIC, seed=29, body="json", public_status=422),
    Route("PUT", "/api/v1/client/kyc", CLIENT, seed=30, body="json"),
    Route("POST", "/api/v1/client/payment-accounts", CLIENT, seed=31, body="json"),
    Route(
        "GET",
        "/api/v1/client/payment-accounts/{account_id}",
        CLIENT,
        seed=32,
        params={"account_id": "payment_account"},
    ),
    Route("GET", "/api/v1/client/payment-accounts", CLIENT, seed=33, query=True),
    Route(
        "PUT",
        "/api/v1/client/payment-accounts/{account_id}",
        CLIENT,
        seed=34,
        params={"account_id": "payment_account"},
        body="json",
    ),
    *report("deposits", 36, 35),
    *report("history-orders", 38, 37),
    *report("positions", 40, 39),
    *report("pending-orders", 42, 41),
    *report("transfers", 44, 43),
    Route("POST", "/api/v1/client/trading-accounts", CLIENT, seed=45, body="json"),
    Route(
        "GET",
        "/api/v1/client/trading-accounts/{account_id}",
        CLIENT,
        seed=46,
        params={"account_id": "trading_account"},
    ),
    Route("GET", "/api/v1/client/trading-account-types", CLIENT, seed=47, query=True),
    Route("GET", "/api/v1/client/trading-accounts", CLIENT, seed=48, query=True),
    Route("PUT", "/api/v1/client/trading-accounts/password", CLIENT, seed=49, body="json"),
    Route("GET", "/api/v1/ib/kyc", IB, seed=50),
    Route("GET", "/api/v1/ib/clients", IB, seed=51, query=True),
    Route("GET", "/api/v1/ib/rebates", IB, seed=52, query=True),
    Route("GET", "/api/v1/ib/platforms", IB, seed=53),
    Route("GET", "/api/v1/ib/client-trading-accounts", IB, seed=54, query=True),
    Route("GET", "/api/v1/ib/profile", IB, seed=55),
    Route("POST", "/api/v1/ib/commissions/details/export", IB, seed=56, body="json"),
    Route("GET", "/api/v1/ib/commissions/details", IB, seed=57, query=True),
    Route("POST", "/api/v1/ib/commissions/export", IB, seed=58, body="json"),
    Route("GET", "/api/v1/ib/commissions", IB, seed=59, query=True),
    # Beyond the seed
    Route("POST", "/api/v1/auth/refresh", REFRESH),
    Route("POST", "/api/v1/auth/logout", ANY),
    Route("GET", "/api/v1/auth/2fa", ANY),
    Route("POST", "/api/v1/auth/2fa/setup", ANY),
    Route("POST", "/api/v1/auth/2fa/confirm", ANY, body="json"),
    Route("DELETE", "/api/v1/auth/2fa", ANY, body="json"),
    Route("GET", "/api/v1/exports/{export_id}", ANY, params={"export_id": "export"}),
    Route(
        "GET",
        "/api/v1/exports/{export_id}/download",
        SIGNED,
        params={"export_id": "export"},
        query=True,
        public_status=422,
    ),
    Route("GET", "/api/v1/admin/audits", ADMIN, query=True),
    Route("GET", "/api/v1/admin/audits/{item_id}", ADMIN, params={"item_id": "review_item"}),
    Route("POST", "/api/v1/admin/audits/{item_id}/approve", ADMIN, params={"item_id": "review_item"}, body="json"),
    Route("POST", "/api/v1/admin/audits/{item_id}/reject", ADMIN, params={"item_id": "review_item"}, body="json"),
    Route("GET", "/api/v1/admin/users", ADMIN, query=True),
    Route("POST", "/api/v1/admin/users", ADMIN, body="json"),
    Route("GET", "/api/v1/admin/users/{user_id}", ADMIN, params={"user_id": "client_id"}),
    Route("PATCH", "/api/v1/admin/users/{user_id}", ADMIN, params={"user_id": "client_id"}, body="json"),
    *crud("deposit-channels", "deposit_channel"),
    *crud("withdrawal-channels", "withdrawal_channel"),
    *crud("trading-account-types", "account_type"),
    *crud("platforms", "platform"),
    *crud("trading-servers", "server"),
    Route(
        "POST", "/api/v1/admin/trading-servers/{object_id}/check", ADMIN, params={"object_id": "server"}, body="json"
    ),
    *crud("rebate-rules", "rebate_rule"),
    Route("GET", "/api/v1/admin/currencies", ADMIN),
    Route("POST", "/api/v1/admin/currencies", ADMIN, body="json"),
    Route("GET", "/api/v1/admin/currencies/{currency_id}", ADMIN, params={"currency_id": "currency"}),
    Route("PUT", "/api/v1/admin/currencies/{currency_id}", ADMIN, params={"currency_id": "currency"}, body="json"),
    Route("DELETE", "/api/v1/admin/currencies/{currency_id}", ADMIN, params={"currency_id": "currency"}),
    Route("PUT", "/api/v1/admin/config/broker", ADMIN, body="json"),
    Route("PUT", "/api/v1/admin/config/login-page", ADMIN, body="json"),
    Route("GET", "/api/v1/admin/audit-logs", ADMIN, query=True),
    Route("GET", "/api/v1/admin/sync", ADMIN),
    Route("POST", "/api/v1/admin/sync", ADMIN, body="json"),
    Route("POST", "/api/v1/admin/rebates/run", ADMIN, body="json"),
    Route("GET", "/api/v1/admin/rebates/runs", ADMIN, query=True),
    Route("GET", "/api/v1/admin/rebates/runs/{run_id}", ADMIN, params={"run_id": "rebate_run"}),
    Route("GET", "/api/v1/admin/users/{user_id}/rebate-payout-account", ADMIN, params={"user_id": "ib_id"}),
    Route(
        "PUT",
        "/api/v1/admin/users/{user_id}/rebate-payout-account",
        ADMIN,
        params={"user_id": "ib_id"},
        body="json",
    ),
    Route("GET", "/api/v1/ib/rebate-payout-account", IB),
    Route("PUT", "/api/v1/ib/rebate-payout-account", IB, body="json"),
    Route("GET", "/api/v1/admin/kyc/form", ADMIN),
    Route("PUT", "/api/v1/admin/kyc/form", ADMIN, body="json"),
    Route("GET", "/api/v1/admin/kyc/questionnaires", ADMIN),
    Route("POST", "/api/v1/admin/kyc/questionnaires", ADMIN, body="json"),
    Route(
        "PUT",
        "/api/v1/admin/kyc/questionnaires/{questionnaire_id}",
        ADMIN,
        params={"questionnaire_id": "questionnaire"},
        body="json",
    ),
    Route("POST", "/api/v1/webhooks/e-verify/{provider}", SIGNED, params={"provider": "everify_provider"}),
    Route("GET", "/api/v1/e-verify/sim/{session_id}", PUBLIC, params={"session_id": "missing"}, public_status=404),
    Route(
        "POST",
        "/api/v1/e-verify/sim/{session_id}/decide",
        PUBLIC,
        params={"session_id": "missing"},
        body="form",
        public_status=422,
    ),
    Route("POST", "/api/v1/uploads", ANY, body="multipart"),
    Route("GET", "/api/v1/uploads/{upload_id}", ANY, params={"upload_id": "upload"}),
    Route("GET", "/api/v1/ib/referral-qr/{code}.png", PUBLIC, params={"code": "referral_code"}, public_status=200),
    Route("GET", "/api/v1/openapi.json", PUBLIC, public_status=200),
]
# Outside the OpenAPI document (probes and Swagger UI), public.
PLAIN_PUBLIC = [("/healthz", 200), ("/readyz", 200), ("/docs", 200)]


# The world: built once for the module -----------------------------------------------------
#
# Every check below is a refused request that changes nothing, so one set of users and
# objects serves the whole table (building it per test would take minutes). The module
# starts from empty tables of its own, as every test does.


def ok(response, status=(200, 201)):
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.get_json(silent=True))
    return response.get_json(silent=True)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def build_world(app, api, sim):
    from crm_app.broker.services import update_setting
    from crm_app.kyc.demo import seed_kyc_demo

    factory = Factory(app)
    with app.app_context():
        update_setting(
            "broker",
            {
                "email_code_required": {
                    "register": False,
                    "withdrawal": False,
                    "transfer": False,
                    "password_change": False,
                }
            },
        )
        seed_kyc_demo()
        users = {
            "admin": factory.admin(),
            "ib": factory.ib(first_name="Ian"),
            "other_ib": factory.ib(first_name="Olga"),
            "other": factory.user(first_name="Otto"),
        }
        users["client"] = factory.user(first_name="Cleo", parent=users["ib"])
        for role in ("client", "ib", "admin"):
            users[f"logged_out_{role}"] = factory.user(role)
            users[f"pw_changed_{role}"] = factory.user(role)
        # Their deposits and withdrawals need approved KYC (through the KYC services).
        factory.approved_kyc(users["client"], first_name="Cleo", last_name="Client")
        factory.approved_kyc(users["other"], first_name="Otto", last_name="Other")
        ids = {name: user.id for name, user in users.items()}
        emails = {name: user.email for name, user in users.items()}

    logins = {name: factory.login(api, email) for name, email in emails.items()}
    tokens = {name: answer["token"] for name, answer in logins.items()}
    refresh_tokens = {name: answer["refresh_token"] for name, answer in logins.items()}
    world = {"tokens": tokens, "refresh_tokens": refresh_tokens, "user_ids": ids, "client_id": ids["client"]}
    world["referral_code"] = ok(api.get("/api/v1/ib/profile", headers=bearer(tokens["ib"])))["ReferralCode"]
    admin = bearer(tokens["admin"])
    first_login = 5900000 + book_counter.next()

    # Configuration: a simulated MT5 demo server, an account type, currency, channels, a platform.
    server = ok(
        api.post(
            "/api/v1/admin/trading-servers",
            headers=admin,
            json={
                "name": "Demo MT5",
                "platform": "MT5",
                "is_demo": True,
                "base_url": sim.server_url("mt5-demo"),
                "manager_login": sim.manager_login,
                "manager_password": sim.manager_password,
                "timezone": "Europe/Nicosia",
                # Logins of our own on the session's simulator, as every `book` takes.
                "next_login": first_login,
                "last_login": first_login + 99,
            },
        )
    )
    account_type = ok(
        api.post(
            "/api/v1/admin/trading-account-types",
            headers=admin,
            json={
                "name": "Demo Standard",
                "server_id": server["id"],
                "mt_group": "demo\\standard-usd",
                "leverage_options": [100, 200],
                "fund_direction": "normal",
            },
        )
    )
    # Money moves only through live accounts: a live server and a type that takes money in and out.
    live_server = ok(
        api.post(
            "/api/v1/admin/trading-servers",
            headers=admin,
            json={
                "name": "Live MT5",
                "platform": "MT5",
                "is_demo": False,
                "base_url": sim.server_url("mt5-live"),
                "manager_login": sim.manager_login,
                "manager_password": sim.manager_password,
                "timezone": "Europe/Nicosia",
                "next_login": 5100000 + first_login - 5900000,
                "last_login": 5100000 + first_login - 5900000 + 99,
            },
        )
    )
    live_type = ok(
        api.post(
            "/api/v1/admin/trading-account-types",
            headers=admin,
            json={
                "name": "Live Standard",
                "server_id": live_server["id"],
                "mt_group": "real\\normal-usd",
                "leverage_options": [100, 200],
                "fund_direction": "normal",
            },
        )
    )

    def open_live_account(headers):
        """Apply for a live account (the caller's KYC is approved) and approve it as the admin."""
        ok(
            api.post(
                "/api/v1/client/account-applications",
                headers=headers,
                json={
                    "currency": "USD",
                    "leverage": 100,
                    "password": GOOD_PASSWORD,
                    "trading_account_type_id": live_type["id"],
                    "trading_platform": "MT5",
                },
            )
        )
        item = ok(api.get("/api/v1/admin/audits?type=account_application&status=pending", headers=admin))["list"][0]
        return ok(api.post(f"/api/v1/admin/audits/{item['id']}/approve", headers=admin, json={}))["object"][
            "trading_account_id"
        ]

    currency = ok(
        api.post(
            "/api/v1/admin/currencies",
            headers=admin,
            json={"code": "USD", "name_en": "US Dollar", "name_zh": "美元", "methods": ["bank_transfer"]},
        )
    )
    deposit_channel = ok(
        api.post(
            "/api/v1/admin/deposit-channels",
            headers=admin,
            json={
                "method": "bank_transfer",
                "name": "Bank (USD)",
                "account_info": "Demo Bank 123",
                "allowed_currencies": ["USD"],
                "min_amount": "10.00",
                "max_amount": "50000.00",
                "pay_type": "bank_account",
                "pay_data": {"bank": "Demo Bank"},
            },
        )
    )
    withdrawal_channel = ok(
        api.post(
            "/api/v1/admin/withdrawal-channels",
            headers=admin,
            json={
                "method": "bank_transfer",
                "name": "Bank (USD)",
                "allowed_currencies": ["USD"],
                "min_amount": "10.00",
                "max_amount": "5000.00",
            },
        )
    )
    platform = ok(api.post("/api/v1/admin/platforms", headers=admin, json={"name": "MetaTrader 5"}))
    questionnaires = ok(api.get("/api/v1/admin/kyc/questionnaires", headers=admin))
    world.update(
        server=server["id"],
        account_type=account_type["id"],
        currency=currency["id"],
        deposit_channel=deposit_channel["id"],
        withdrawal_channel=withdrawal_channel["id"],
        platform=platform["id"],
        questionnaire=questionnaires["list"][0]["id"],
        rebate_rule=1,  # refusals come before any lookup
        rebate_run=1,
        ib_id=ids["ib"],
        everify_provider="sim",
        missing="no-such-object",
    )

    # The client's own objects, each reached by another user in the 404 checks.
    def own_objects(name, login_offset):
        headers = bearer(tokens[name])
        account = open_live_account(headers)
        payment_account = ok(
            api.post(
                "/api/v1/client/payment-accounts",
                headers=headers,
                json={
                    "payment_method": "bank_transfer",
                    "bank_transfer_info": {
                        "bank_country": "GB",
                        "bank_name": "Demo Bank",
                        "bank_no": f"GB33BUKB2020155555555{login_offset}",
                        "branch_name": "City",
                        "bsc_code": "20-20-15",
                    },
                },
            )
        )["id"]
        upload = ok(
            api.post(
                "/api/v1/uploads",
                headers=headers,
                data={"file": (io.BytesIO(PNG), "receipt.png")},
                content_type="multipart/form-data",
            )
        )
        deposit = ok(
            api.post(
                "/api/v1/client/deposits",
                headers=headers,
                json={
                    "deposit_amount": "100.00",
                    "remittance_id": deposit_channel["id"],
                    "trading_account_id": account,
                },
            )
        )
        export = api.post("/api/v1/reports/deposits/export", headers=headers, json={"status": "all"})
        export_url = ok(export)["download_url"]
        return {
            "trading_account": account,
            "payment_account": payment_account,
            "upload": upload["id"],
            "upload_url": upload["url"],
            "deposit_order": deposit["order_number"],
            "export": re.search(r"/exports/([^/]+)/download", export_url).group(1),
            "export_url": export_url,
        }

    world.update(own_objects("client", 1))
    world["second_trading_account"] = open_live_account(bearer(tokens["client"]))
    world["other_objects"] = own_objects("other", 2)
    # A deposit submitted for review: the review item the admin routes reach.
    ok(
        api.post(
            "/api/v1/client/deposits/submit",
            headers=bearer(tokens["other"]),
            json={
                "order_number": world["other_objects"]["deposit_order"],
                "receipt_url": world["other_objects"]["upload_url"],
            },
        )
    )
    world["review_item"] = ok(api.get("/api/v1/admin/audits", headers=admin))["list"][0]["id"]

    # Tokens revoked by a logout and by a password change, one of each per role.
    for role in ("client", "ib", "admin"):
        ok(api.post("/api/v1/auth/logout", headers=bearer(tokens[f"logged_out_{role}"])), 204)
        ok(
            api.post(
                "/api/v1/auth/password",
                headers=bearer(tokens[f"pw_changed_{role}"]),
                json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
            ),
            (200, 204),
        )
    return world


@pytest.fixture(autouse=True)
def clean_state():
    """Replaces the suite's per-test clean slate: here the module starts from one of its own."""
    yield


@pytest.fixture(scope="module")
def matrix(app, sim):
    """(test client, world) for the whole module."""
    empty_database_and_redis(app)
    app.test_client_class = IsolatedClient
    api = app.test_client()
    return api, build_world(app, api, sim)


def path_of(route, world, objects=None):
    objects = objects or world
    path = route.path
    for name, key in route.params.items():
        path = path.replace("{" + name + "}", str(objects.get(key, world.get(key))))
    return path


def call(api, route, path, headers=None, json_body=None, query=""):
    kwargs = {"headers": headers or {}}
    if route.body == "json":
        kwargs["json"] = {} if json_body is None else json_body
    elif route.body in ("multipart", "form"):
        kwargs["data"] = {}
    return api.open(path + query, method=route.method, **kwargs)


def assert_error_shape(response, status):
    body = response.get_json(silent=True)
    assert response.status_code == status, (response.status_code, body)
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, body
    assert body["status"] == status and isinstance(body["code"], str) and isinstance(body["message"], str), body
    assert isinstance(body["errors"], dict), body
    return body


# The table itself ---------------------------------------------------------------------------


def documented_operations(app):
    with app.test_request_context():
        from crm_app.extensions import api

        spec = api.spec.to_dict()
    return {
        (method.upper(), path): operation
        for path, operations in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in operations.items()
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_the_table_names_every_operation_of_the_openapi_document_once(app):
    documented = documented_operations(app)
    in_table = [(route.method, route.path) for route in ROUTES if route.path != "/api/v1/openapi.json"]
    assert len(in_table) == len(set(in_table)), "a route is in the table twice"
    assert sorted(set(documented) - set(in_table)) == [], "routes missing from the security matrix"
    assert sorted(set(in_table) - set(documented)) == [], "routes in the matrix that the app does not have"


def test_the_table_has_every_seed_operation_once():
    seeds = sorted(route.seed for route in ROUTES if route.seed is not None)
    assert seeds == list(range(1, 60))


def test_the_roles_in_the_table_are_the_roles_the_document_states(app):
    expected = {ANY: ["admin", "client", "ib"], CLIENT: ["client", "ib"], IB: ["ib"], ADMIN: ["admin"]}
    documented = documented_operations(app)
    for route in ROUTES:
        operation = documented.get((route.method, route.path))
        if operation is None:
            continue
        assert operation.get("x-roles") == expected.get(route.role), route.id
        if route.role in expected:
            assert operation.get("security") == [{"bearerAuth": []}], route.id


# The checks ---------------------------------------------------------------------------------


def routes_of(*roles):
    return [pytest.param(route, id=route.id) for route in ROUTES if route.role in roles]


@pytest.mark.parametrize("route", routes_of(ANY, CLIENT, IB, ADMIN, REFRESH))
def test_without_a_token_is_401(matrix, route):
    api, world = matrix
    body = assert_error_shape(call(api, route, path_of(route, world)), 401)
    assert body["code"] == "unauthorized"


@pytest.mark.parametrize("route", routes_of(ANY, CLIENT, IB, ADMIN, REFRESH))
@pytest.mark.parametrize("header", ["Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "Token abc"])
def test_a_malformed_authorization_header_is_401(matrix, route, header):
    api, world = matrix
    assert_error_shape(call(api, route, path_of(route, world), headers={"Authorization": header}), 401)


@pytest.mark.parametrize("route", routes_of(PUBLIC))
def test_public_routes_answer_without_a_token(matrix, route):
    api, world = matrix
    response = call(api, route, path_of(route, world))
    assert response.status_code == route.public_status, response.get_json(silent=True)
    if response.status_code >= 400:
        assert_error_shape(response, route.public_status)


@pytest.mark.parametrize(("path", "status"), PLAIN_PUBLIC)
def test_probes_and_swagger_ui_answer_without_a_token(matrix, path, status):
    api, _ = matrix
    assert api.get(path).status_code == status


def test_signed_routes_refuse_unsigned_callers(matrix):
    api, world = matrix
    download = f"/api/v1/exports/{world['export']}/download"
    assert assert_error_shape(api.get(download), 422)["errors"] == {"token": ["Missing data for required field."]}
    assert_error_shape(api.get(download + "?token=forged"), 403)
    # A user's bearer token is no signature.
    assert_error_shape(api.get(download + "?token=" + world["tokens"]["client"]), 403)
    webhook = "/api/v1/webhooks/e-verify/sim"
    assert_error_shape(api.post(webhook, json={"session_id": "x", "status": "passed"}), 401)
    signed_badly = {"X-Signature": "sha256=" + "0" * 64, "X-Signature-Timestamp": "1700000000"}
    assert_error_shape(api.post(webhook, json={"session_id": "x"}, headers=signed_badly), 401)


def wrong_role_cases():
    for route in ROUTES:
        for role in WRONG_ROLES.get(route.role, ()):
            yield pytest.param(route, role, id=f"{route.id} as {role}")


@pytest.mark.parametrize(("route", "role"), list(wrong_role_cases()))
def test_the_wrong_role_is_403(matrix, route, role):
    api, world = matrix
    response = call(api, route, path_of(route, world), headers=bearer(world["tokens"][role]))
    assert assert_error_shape(response, 403)["code"] == "forbidden"
    assert response.headers["Cache-Control"] == "no-store"


def revoked_cases():
    for route in ROUTES:
        if route.role in RIGHT_ROLE or route.role == REFRESH:
            for how in ("logged_out", "pw_changed"):
                yield pytest.param(route, how, id=f"{route.id} after {how}")


@pytest.mark.parametrize(("route", "how"), list(revoked_cases()))
def test_a_token_revoked_by_logout_or_password_change_is_401(matrix, route, how):
    api, world = matrix
    if route.role == REFRESH:
        token = world["refresh_tokens"][f"{how}_client"]
    else:
        role = {ANY: "client", CLIENT: "client", IB: "ib", ADMIN: "admin"}[route.role]
        token = world["tokens"][f"{how}_{role}"]
    response = call(api, route, path_of(route, world), headers=bearer(token))
    assert assert_error_shape(response, 401)["code"] in ("token_revoked", "unauthorized")


def test_an_access_token_is_no_refresh_token_and_a_refresh_token_no_access_token(matrix):
    api, world = matrix
    assert_error_shape(api.post("/api/v1/auth/refresh", headers=bearer(world["tokens"]["client"])), 401)
    assert_error_shape(api.get("/api/v1/client/kyc", headers=bearer(world["refresh_tokens"]["client"])), 401)
    answer = api.post("/api/v1/auth/refresh", headers=bearer(world["refresh_tokens"]["client"]))
    assert answer.status_code == 200


def unknown_field_cases():
    return [pytest.param(route, id=route.id) for route in ROUTES if route.body]


def caller_of(route, world):
    role = RIGHT_ROLE.get(route.role)
    return bearer(world["tokens"][role]) if role else {}


@pytest.mark.parametrize("route", unknown_field_cases())
def test_an_unknown_field_is_422(matrix, route):
    """Schemas refuse what they do not know in a body (no mass assignment)."""
    api, world = matrix
    path = path_of(route, world)
    headers = caller_of(route, world)
    if route.body == "json":
        response = api.open(path, method=route.method, headers=headers, json={UNKNOWN: "x"})
    else:
        response = api.open(path, method=route.method, headers=headers, data={UNKNOWN: "x"})
    body = assert_error_shape(response, 422)
    assert UNKNOWN in body["errors"], body


@pytest.mark.parametrize("route", [p for p in routes_of(PUBLIC, ANY, CLIENT, IB, ADMIN) if p.values[0].method == "GET"])
def test_an_unknown_query_key_is_ignored(matrix, route):
    """Browsers and caches add query keys (`_t=` cache-busters, `page` on a list that does not
    page): a read answers as it does without them, and never names them in an error."""
    api, world = matrix
    path, headers = path_of(route, world), caller_of(route, world)
    plain = call(api, route, path, headers=headers)
    stray = call(api, route, path, headers=headers, query=f"?{UNKNOWN}=x&_t=1&page=1&size=20")
    assert stray.status_code == plain.status_code, (stray.status_code, stray.get_json(silent=True))
    if stray.status_code >= 400:
        assert UNKNOWN not in assert_error_shape(stray, stray.status_code)["errors"]


@functools.cache
def documented_spec(app):
    with app.test_request_context():
        from crm_app.extensions import api

        return api.spec.to_dict()


def first_text_field(app, route):
    """The operation's first free-text field (no enum, no pattern) in its body or query:
    the odd-input checks send their value there (an unknown field when it has none)."""
    spec = documented_spec(app)
    operation = spec["paths"][route.path][route.method.lower()]
    if route.body == "json":
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        candidates = schema.get("properties", {}).items()
    else:
        candidates = [(p["name"], p.get("schema", {})) for p in operation.get("parameters", []) if p["in"] == "query"]
    for name, field_schema in candidates:
        if field_schema.get("type") == "string" and not {"enum", "pattern", "format"} & set(field_schema):
            return name
    # A query key the route does not read is ignored: the check goes to one it reads.
    if route.body is None and candidates:
        return next(iter(candidates))[0]
    return UNKNOWN


NUL_MESSAGE = "Must not contain NUL characters."


def odd_input_cases():
    return [pytest.param(route, id=route.id) for route in ROUTES if route.body or route.query]


@pytest.mark.parametrize("route", odd_input_cases())
def test_odd_text_or_an_unreadable_number_is_422_naming_the_field(app, matrix, route):
    """No PostgreSQL text takes a NUL, no UTF-8 a lone surrogate, and Python refuses to read
    an integer of more than 4,300 digits: each is refused, naming the field, before any lookup."""
    api, world = matrix
    path, headers = path_of(route, world), caller_of(route, world)
    name = first_text_field(app, route) if route.body in ("json", None) else UNKNOWN
    if route.body == "json":
        for value, message in (
            ('"a\\u0000b"', NUL_MESSAGE),
            ('"\\ud800"', "Not valid text (a lone surrogate has no UTF-8 form)."),
            ("9" * 5000, "Number out of range."),
        ):
            text = f'{{"{name}": {value}}}'
            response = api.open(path, method=route.method, headers=headers, data=text, content_type="application/json")
            assert assert_error_shape(response, 422)["errors"].get(name) == [message], (name, value[:10])
    elif route.body in ("form", "multipart"):
        response = api.open(path, method=route.method, headers=headers, data={name: "a\x00b"})
        assert name in assert_error_shape(response, 422)["errors"]
    else:
        response = api.open(f"{path}?{name}=a%00b", method=route.method, headers=headers)
        assert assert_error_shape(response, 422)["errors"].get(name) == [NUL_MESSAGE], name


@pytest.mark.parametrize("route", [p for p in routes_of(ANY, CLIENT, IB, ADMIN) if p.values[0].method == "GET"])
def test_every_answer_to_a_signed_in_read_is_not_stored(matrix, route):
    """Tokens, KYC data and full bank numbers stay out of every cache (reads change nothing)."""
    api, world = matrix
    response = call(api, route, path_of(route, world), headers=caller_of(route, world))
    assert response.status_code < 500
    assert response.headers["Cache-Control"] in ("no-store", "private, no-store"), route.id


def test_a_token_is_checked_before_the_arguments(matrix):
    api, _ = matrix
    response = api.get(f"/api/v1/client/kyc?{UNKNOWN}=x")
    assert assert_error_shape(response, 401)["code"] == "unauthorized"
    response = api.get(f"/api/v1/client/deposits?{UNKNOWN}=x", headers=bearer(_["tokens"]["admin"]))
    assert_error_shape(response, 403)


def test_a_json_body_on_a_route_that_takes_none_is_422(matrix):
    api, world = matrix
    headers = bearer(world["tokens"]["client"])
    response = api.get("/api/v1/client/kyc", headers=headers, json={UNKNOWN: "x"})
    assert UNKNOWN in assert_error_shape(response, 422)["errors"]
    response = api.post("/api/v1/auth/logout", headers=headers, json={UNKNOWN: "x"})
    assert UNKNOWN in assert_error_shape(response, 422)["errors"]
    assert api.get("/api/v1/client/kyc", headers=headers).status_code == 200  # still signed in


# Another user's objects -----------------------------------------------------------------------

MISSING = {
    "trading_account": 987654,
    "payment_account": 987654,
    "upload": "0" * 32,
    "upload_url": "/api/v1/uploads/" + "0" * 32,
    "deposit_order": "D00000000000",
    "export": "no-such-export-0000",
    "client_id": 987654,
}
BANK_INFO = {
    "account_holder_name": "Otto Other",
    "bank_country": "GB",
    "bank_name": "Demo Bank",
    "bank_no": "GB33BUKB20201555555599",
    "branch_name": "City",
    "bsc_code": "20-20-15",
}


@dataclass(frozen=True)
class Reach:
    """A request by `caller` that names an object of the client's (or, to compare, none)."""

    name: str
    caller: str
    method: str
    path: str
    body: object = None  # (world, target) -> JSON body
    status: int = 404
    list_route: bool = False  # a filter: answers an empty list, as for an unknown id

    def send(self, api, world, target):
        path = self.path.format(**target)
        body = self.body(world, target) if self.body else None
        return api.open(path, method=self.method, headers=bearer(world["tokens"][self.caller]), json=body)


def withdrawal_body(world, target):
    return {
        "method": "bank_transfer",
        "remittance_id": world["withdrawal_channel"],
        "trading_account_id": target["trading_account"],
        "withdrawal_amount": "50.00",
        "fee": "0.00",
        "exchange_rate": "1",
        "remittance_amount": "50.00",
        "currency": "USD",
        "remark": "rent",
        "bank_transfer_info": BANK_INFO,
    }


REACHES = [
    Reach("read a payout account", "other", "GET", "/api/v1/client/payment-accounts/{payment_account}"),
    Reach(
        "update a payout account",
        "other",
        "PUT",
        "/api/v1/client/payment-accounts/{payment_account}",
        body=lambda w, t: {"bank_transfer_info": {"bank_name": "Other Bank"}, "remark": "mine now"},
    ),
    Reach("read a trading account", "other", "GET", "/api/v1/client/trading-accounts/{trading_account}"),
    Reach(
        "change a trading account's password",
        "other",
        "PUT",
        "/api/v1/client/trading-accounts/password",
        body=lambda w, t: {"id": t["trading_account"], "password": "NewTrade123x", "type": "trade"},
    ),
    Reach("read an upload", "other", "GET", "/api/v1/uploads/{upload}"),
    Reach("read an export", "other", "GET", "/api/v1/exports/{export}"),
    Reach(
        "deposit into a trading account",
        "other",
        "POST",
        "/api/v1/client/deposits",
        body=lambda w, t: {
            "deposit_amount": "100.00",
            "remittance_id": w["deposit_channel"],
            "trading_account_id": t["trading_account"],
        },
    ),
    Reach(
        "submit a deposit",
        "other",
        "POST",
        "/api/v1/client/deposits/submit",
        body=lambda w, t: {"order_number": t["deposit_order"], "receipt_url": w["other_objects"]["upload_url"]},
    ),
    Reach(
        "use an upload as a KYC document",
        "other",
        "PUT",
        "/api/v1/client/kyc",
        body=lambda w, t: {
            "module": "authentication",
            "data": {"authentication": {"identification_type": "passport", "passport": t["upload_url"]}},
        },
        status=422,
    ),
    Reach("withdraw from a trading account", "other", "POST", "/api/v1/client/withdrawals", body=withdrawal_body),
    Reach(
        "transfer out of a trading account",
        "other",
        "POST",
        "/api/v1/client/transfers",
        body=lambda w, t: {
            "amount": "10.00",
            "remark": "x",
            "source_trading_account_id": t["trading_account"],
            "target_trading_account_id": w["other_objects"]["trading_account"],
        },
    ),
    Reach(
        "transfer into a trading account",
        "other",
        "POST",
        "/api/v1/client/transfers",
        body=lambda w, t: {
            "amount": "10.00",
            "remark": "x",
            "source_trading_account_id": w["other_objects"]["trading_account"],
            "target_trading_account_id": t["trading_account"],
        },
    ),
    *[
        Reach(
            f"filter the {report} report by a trading account",
            "other",
            "GET",
            f"/api/v1/reports/{report}?trading_type=all&trading_account_id={{trading_account}}",
            list_route=True,
        )
        for report in ("history-orders", "positions", "pending-orders")
    ],
    Reach(
        "take a trading account for rebates",
        "other_ib",
        "PUT",
        "/api/v1/ib/rebate-payout-account",
        body=lambda w, t: {"trading_account_id": t["trading_account"]},
    ),
    Reach("list an IB's client", "other_ib", "GET", "/api/v1/ib/clients?client_user_id={client_id}", list_route=True),
    Reach(
        "list an IB's client's accounts",
        "other_ib",
        "GET",
        "/api/v1/ib/client-trading-accounts?client_user_id={client_id}&scope=all",
        list_route=True,
    ),
]


@pytest.mark.parametrize("reach", [pytest.param(r, id=r.name) for r in REACHES])
def test_another_users_object_answers_like_a_missing_one(matrix, reach):
    api, world = matrix
    theirs = reach.send(api, world, {**MISSING, **world, "client_id": world["client_id"]})
    missing = reach.send(api, world, MISSING)
    if reach.list_route:
        assert theirs.status_code == missing.status_code
        if theirs.status_code == 200:
            assert theirs.get_json()["total"] == 0 and theirs.get_json()["list"] == [], theirs.get_json()
            return
    body = assert_error_shape(theirs, reach.status)
    assert body == missing.get_json(), "another user's object must answer exactly like a missing one"


def test_the_owner_reaches_the_same_objects(matrix):
    """The 404s above are about ownership, not broken requests."""
    api, world = matrix
    owner = bearer(world["tokens"]["client"])
    assert api.get(f"/api/v1/client/payment-accounts/{world['payment_account']}", headers=owner).status_code == 200
    assert api.get(f"/api/v1/client/trading-accounts/{world['trading_account']}", headers=owner).status_code == 200
    assert api.get(f"/api/v1/uploads/{world['upload']}", headers=owner).status_code == 200
    assert api.get(f"/api/v1/exports/{world['export']}", headers=owner).status_code == 200
    ib = bearer(world["tokens"]["ib"])
    listed = api.get(f"/api/v1/ib/clients?client_user_id={world['client_id']}", headers=ib).get_json()
    assert listed["total"] == 1, listed
