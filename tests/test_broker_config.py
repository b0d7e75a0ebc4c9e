"""Broker configuration: #7 login page, #8 broker, #9 currencies, #3/#4/#12 permissions and menus,
the admin editing routes, the demo seed, localized errors."""

import contextvars
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_app.admin.models import AuditLog
from crm_app.broker.models import BrokerSetting, Currency, Menu, PermissionAction
from crm_app.demo import ACTIONS, DEMO_ADMIN, DEMO_CLIENT, DEMO_IB, DEMO_PASSWORD, MENUS, seed_demo
from crm_app.extensions import db

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "crm-saas-api.txt"
# Where each operation's response starts in the seed (ROUTES.md's "seed line").
SEED_LINE = {"#3": 27, "#4": 74, "#7": 124, "#8": 142, "#9": 152, "#12": 197}

I18N_KEYS = {"en", "zh-CN", "zh-TW"}
LOGIN_PAGE_FIELDS = {
    f"{portal}_{field}"
    for portal in ("admin", "client", "ib")
    for field in ("login_bg_image_url", "login_copy_i18n", "login_layout")
}
BROKER_FIELDS = {
    "broker_name_i18n",
    "company_logo_url",
    "email",
    "login_page_logo_url",
    "support_phone",
    "timezone",
    "watermark_logo_url",
}
MENU_FIELDS = {
    "action",
    "children",
    "desc",
    "icon",
    "id",
    "key",
    "parent_id",
    "path",
    "sort_order",
    "status",
    "title",
    "user_type",
}
ACTION_FIELDS = {"methods", "path", "title", "url"}


class Api:
    """The test client, each request in its own app context as in production (the test's open
    app context would otherwise share its session with every request and skip their teardown)."""

    def __init__(self, client):
        self.client = client

    def open(self, method, url, **kwargs):
        return contextvars.Context().run(self.client.open, url, method=method, **kwargs)

    def get(self, url, **kw):
        return self.open("GET", url, **kw)

    def post(self, url, **kw):
        return self.open("POST", url, **kw)

    def put(self, url, **kw):
        return self.open("PUT", url, **kw)

    def delete(self, url, **kw):
        return self.open("DELETE", url, **kw)


@pytest.fixture
def api(client):
    return Api(client)


@pytest.fixture
def demo(ctx):
    seed_demo()


def bearer(api, email, password):
    response = api.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


@pytest.fixture
def admin_headers(api, demo):
    return bearer(api, *DEMO_ADMIN)


@pytest.fixture
def client_headers(api, demo):
    return bearer(api, DEMO_CLIENT, DEMO_PASSWORD)


@pytest.fixture
def ib_headers(api, demo):
    return bearer(api, DEMO_IB, DEMO_PASSWORD)


def committed(statement):
    with db.engine.connect() as conn:
        return conn.execute(statement).all()


def table_counts():
    return {t.name: committed(sa.select(sa.func.count()).select_from(t))[0][0] for t in db.metadata.sorted_tables}


def stored_setting(key):
    rows = committed(sa.select(BrokerSetting.value).where(BrokerSetting.key == key))
    return rows[0][0] if rows else None


def audit_actions():
    return [row[0] for row in committed(sa.select(AuditLog.action).order_by(AuditLog.id))]


def assert_error(response, status, code, field=None):
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) == {"code", "status", "message", "errors"}, body
    assert body["code"] == code and body["status"] == status, body
    if field is not None:
        assert field in body["errors"], body


# The seed's examples -------------------------------------------------------------


def seed_response(operation):
    """The seed's response example of an operation, as JSON (the seed is a rendered page).

    None when the seed document is not next to the project: the literal field sets below
    still hold the seed's fields, only the type-by-type comparison is left out."""
    if not SEED.exists():
        return None
    lines = SEED.read_text(encoding="utf-8").splitlines(keepends=True)
    text = "".join(lines[SEED_LINE[operation] - 1 :])
    start = text.index("{-")
    depth = 0
    end = start
    for end, char in enumerate(text[start:], start):  # noqa: B007 (end is used after the loop)
        depth += char in "{["
        depth -= char in "}]"
        if depth == 0:
            break
    return json.loads(re.sub(r"(^|[\[{,])(\s*)-\s", r"\1\2", text[start : end + 1], flags=re.M))


def assert_seed_shape(value, example, where="$", exact=True):
    """`value` has every field of the seed's `example`, with the example's JSON types.

    `property1`/`property2` keys are the seed's way of writing a map; `{}` in a list is its
    way of writing "the same object again" (a recursive tree)."""
    if example is None and where == "$":
        return  # no seed document here
    if isinstance(example, dict):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        if not example:
            return
        if set(example) <= {"property1", "property2"}:
            for key, item in value.items():
                assert_seed_shape(item, example["property1"], f"{where}.{key}", exact)
            return
        missing = set(example) - set(value)
        assert not missing, f"{where}: missing seed fields {sorted(missing)}"
        if exact:
            assert set(value) == set(example), f"{where}: fields beyond the seed {sorted(set(value) - set(example))}"
        for key, sub in example.items():
            assert_seed_shape(value[key], sub, f"{where}.{key}", exact)
    elif isinstance(example, list):
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        if example and example[0] != {}:
            for index, item in enumerate(value):
                assert_seed_shape(item, example[0], f"{where}[{index}]", exact)
    elif isinstance(example, bool):
        assert isinstance(value, bool), f"{where}: {value!r} is not a boolean"
    elif isinstance(example, int):
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is not an integer"
    elif isinstance(example, str):
        assert isinstance(value, str), f"{where}: {value!r} is not a string"


def test_the_seed_examples_are_what_this_file_expects():
    if not SEED.exists():
        pytest.skip(f"seed document not found at {SEED}")
    assert set(seed_response("#7")) == LOGIN_PAGE_FIELDS
    assert set(seed_response("#8")) == BROKER_FIELDS
    assert set(seed_response("#3")["menus"][0]) == MENU_FIELDS
    assert set(seed_response("#3")["actions"]["property1"]) == ACTION_FIELDS
    assert seed_response("#12") == seed_response("#3")
    assert seed_response("#4") == {"list": seed_response("#3")["menus"]}


# #7 and #8: public configuration ------------------------------------------------------


def test_login_page_config_is_public_with_every_seed_field(api, demo):
    response = api.get("/api/v1/config/login-page")
    body = response.get_json()
    assert response.status_code == 200, body
    assert set(body) == LOGIN_PAGE_FIELDS
    for portal in ("admin", "client", "ib"):
        assert set(body[f"{portal}_login_copy_i18n"]) == I18N_KEYS
    assert body["client_login_layout"] == "split"
    assert body["admin_login_copy_i18n"]["zh-CN"] == "后台管理"
    assert_seed_shape(body, seed_response("#7"))


def test_broker_config_is_public_with_every_seed_field(api, demo):
    response = api.get("/api/v1/config/broker")
    body = response.get_json()
    assert response.status_code == 200, body
    assert BROKER_FIELDS <= set(body)
    assert set(body) - BROKER_FIELDS == {"email_code_required", "withdrawal_payee_must_match_kyc"}
    assert set(body["broker_name_i18n"]) == I18N_KEYS
    assert body["timezone"] == "Asia/Shanghai"
    assert body["broker_name_i18n"]["en"] == "Demo Markets Ltd"
    assert_seed_shape(body, seed_response("#8"), exact=False)


def test_public_config_has_every_field_even_before_anything_is_configured(api, ctx):
    login_page = api.get("/api/v1/config/login-page").get_json()
    broker = api.get("/api/v1/config/broker").get_json()
    assert_seed_shape(login_page, seed_response("#7"))
    assert_seed_shape(broker, seed_response("#8"), exact=False)
    assert broker["timezone"] == "UTC"
    assert broker["email_code_required"] == {
        "register": True,
        "withdrawal": True,
        "transfer": True,
        "password_change": True,
    }
    assert broker["withdrawal_payee_must_match_kyc"] is True
    assert stored_setting("broker") is None  # reading writes nothing


# Admin editing ------------------------------------------------------------------------


def test_admin_edits_only_the_broker_fields_it_sends(api, admin_headers):
    before = api.get("/api/v1/config/broker").get_json()
    response = api.put(
        "/api/v1/admin/config/broker",
        json={
            "support_phone": "+86 21 1234 5678",
            "broker_name_i18n": {"en": "New Markets"},
            "email_code_required": {"withdrawal": False},
            "timezone": "Europe/London",
        },
        headers=admin_headers,
    )
    body = response.get_json()
    assert response.status_code == 200, body
    expected = {
        **before,
        "support_phone": "+86 21 1234 5678",
        "timezone": "Europe/London",
        "broker_name_i18n": {**before["broker_name_i18n"], "en": "New Markets"},
        "email_code_required": {**before["email_code_required"], "withdrawal": False},
    }
    # The admin's answer also shows the security switch the public document leaves out.
    assert body == {**expected, "require_admin_otp": False}
    assert api.get("/api/v1/config/broker").get_json() == expected
    assert stored_setting("broker")["broker_name_i18n"]["zh-CN"] == "演示金融有限公司"


def test_admin_edits_only_the_login_page_fields_it_sends(api, admin_headers):
    before = api.get("/api/v1/config/login-page").get_json()
    response = api.put(
        "/api/v1/admin/config/login-page",
        json={"client_login_layout": "left", "ib_login_copy_i18n": {"zh-TW": "夥伴"}},
        headers=admin_headers,
    )
    body = response.get_json()
    assert response.status_code == 200, body
    expected = {
        **before,
        "client_login_layout": "left",
        "ib_login_copy_i18n": {**before["ib_login_copy_i18n"], "zh-TW": "夥伴"},
    }
    assert body == expected
    assert api.get("/api/v1/config/login-page").get_json() == expected


def test_config_edits_are_audited(api, admin_headers, demo):
    api.put("/api/v1/admin/config/broker", json={"support_phone": "1"}, headers=admin_headers)
    api.put("/api/v1/admin/config/login-page", json={"admin_login_layout": "right"}, headers=admin_headers)
    entries = api.get("/api/v1/admin/audit-logs?target_type=config", headers=admin_headers).get_json()["list"]
    assert [(e["action"], e["target_id"], e["details"]) for e in entries] == [
        ("config.login_page.update", "login_page", {"fields": ["admin_login_layout"]}),
        ("config.broker.update", "broker", {"fields": ["support_phone"]}),
    ]
    assert all(e["actor_email"] == DEMO_ADMIN[0] and e["ip"] == "127.0.0.1" for e in entries)


@pytest.mark.parametrize(
    "url, payload, field",
    [
        ("/api/v1/admin/config/broker", {"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ("/api/v1/admin/config/broker", {"timezone": ""}, "timezone"),
        ("/api/v1/admin/config/broker", {"timezone": "../../etc/passwd"}, "timezone"),
        pytest.param(
            "/api/v1/admin/config/broker",
            {"timezone": "America"},
            "timezone",
        ),
        pytest.param(
            "/api/v1/admin/config/broker",
            {"timezone": "A" * 300},
            "timezone",
        ),
        ("/api/v1/admin/config/broker", {"timezone": None}, "timezone"),
        ("/api/v1/admin/config/broker", {"support_phone": 12345}, "support_phone"),
        ("/api/v1/admin/config/broker", {"broker_name_i18n": {"fr": "Courtier"}}, "broker_name_i18n"),
        ("/api/v1/admin/config/broker", {"email_code_required": {"deposit": False}}, "email_code_required"),
        ("/api/v1/admin/config/broker", {"email_code_required": {"register": "maybe"}}, "email_code_required"),
        ("/api/v1/admin/config/broker", {"company_logo_url": "x" * 1025}, "company_logo_url"),
        ("/api/v1/admin/config/broker", {"brand_color": "#fff"}, "brand_color"),
        ("/api/v1/admin/config/login-page", {"client_login_layout": "diagonal"}, "client_login_layout"),
        ("/api/v1/admin/config/login-page", {"admin_login_copy_i18n": "Back office"}, "admin_login_copy_i18n"),
        ("/api/v1/admin/config/login-page", {"partner_login_layout": "center"}, "partner_login_layout"),
        ("/api/v1/admin/config/login-page", {"timezone": "UTC"}, "timezone"),
    ],
)
def test_bad_config_edits_are_422_and_change_nothing(api, admin_headers, url, payload, field):
    before = {key: stored_setting(key) for key in ("broker", "login_page")}
    audit_before = audit_actions()
    # A good field next to the bad one must not be applied either.
    good = {"support_phone": "999"} if url.endswith("/broker") else {"admin_login_layout": "left"}
    response = api.put(url, json={**good, **payload}, headers=admin_headers)
    assert_error(response, 422, "validation_error", field)
    assert {key: stored_setting(key) for key in ("broker", "login_page")} == before
    assert audit_actions() == audit_before


def test_config_edit_with_a_non_object_body_is_422(api, admin_headers):
    for body in ([], "text", 3):
        response = api.put("/api/v1/admin/config/broker", json=body, headers=admin_headers)
        assert response.status_code == 422, response.get_json()
    response = api.put(
        "/api/v1/admin/config/broker", data="{not json", content_type="application/json", headers=admin_headers
    )
    assert response.status_code in (400, 422)
    assert set(response.get_json()) == {"code", "status", "message", "errors"}


@pytest.mark.parametrize("who", ["client_headers", "ib_headers"])
def test_config_edits_by_non_admins_are_403(api, request, who):
    headers = request.getfixturevalue(who)
    before = {key: stored_setting(key) for key in ("broker", "login_page")}
    assert_error(api.put("/api/v1/admin/config/broker", json={"support_phone": "1"}, headers=headers), 403, "forbidden")
    assert_error(
        api.put("/api/v1/admin/config/login-page", json={"ib_login_layout": "right"}, headers=headers), 403, "forbidden"
    )
    assert_error(api.put("/api/v1/admin/config/broker", json={"support_phone": "1"}), 401, "unauthorized")
    assert {key: stored_setting(key) for key in ("broker", "login_page")} == before


# #9: currencies ------------------------------------------------------------------------


def currency_codes(api, query=""):
    response = api.get(f"/api/v1/currencies{query}")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["total"] == len(body["list"])
    assert_seed_shape(body, seed_response("#9"))
    return [c["code"] for c in body["list"]]


def test_currencies_are_filtered_by_funding_method(api, demo):
    assert currency_codes(api) == ["USD", "EUR", "CNY", "USDT", "BTC"]
    assert currency_codes(api, "?method=all") == ["USD", "EUR", "CNY", "USDT", "BTC"]
    assert currency_codes(api, "?method=bank_transfer") == ["USD", "EUR", "CNY"]
    assert currency_codes(api, "?method=international_wire_transfer") == ["USD", "EUR"]
    assert currency_codes(api, "?method=cryptocurrency") == ["USD", "USDT", "BTC"]
    usd = api.get("/api/v1/currencies").get_json()["list"][0]
    assert usd == {"code": "USD", "name": {"en": "US Dollar", "zh": "美元"}}


def test_normal_means_every_currency_as_the_seed_says(api, demo):
    """The seed's enum for #9 says `all`, its text says "normal为全部" (normal is all): a
    front end may send either, and both answer the whole list."""
    assert currency_codes(api, "?method=normal") == currency_codes(api, "?method=all")
    assert currency_codes(api, "?method=normal") == ["USD", "EUR", "CNY", "USDT", "BTC"]


@pytest.mark.parametrize("query", ["?method=paypal", "?method=NORMAL"])
def test_currencies_with_a_bad_method_are_422(api, demo, query):
    assert_error(api.get(f"/api/v1/currencies{query}"), 422, "validation_error", "method")


@pytest.mark.parametrize("query", ["?method=", "?method=all&page=1", "?_t=1"])
def test_currencies_with_an_empty_method_or_a_stray_key_list_everything(api, demo, query):
    assert currency_codes(api, query) == currency_codes(api, "?method=all")


def test_disabled_currencies_are_hidden_from_the_public_list(api, admin_headers):
    eur = committed(sa.select(Currency.id).where(Currency.code == "EUR"))[0][0]
    response = api.put(f"/api/v1/admin/currencies/{eur}", json={"enabled": False}, headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["enabled"] is False
    assert currency_codes(api) == ["USD", "CNY", "USDT", "BTC"]
    assert currency_codes(api, "?method=international_wire_transfer") == ["USD"]
    admin_list = api.get("/api/v1/admin/currencies", headers=admin_headers).get_json()
    assert admin_list["total"] == 5
    assert {c["code"]: c["enabled"] for c in admin_list["list"]}["EUR"] is False


def test_admin_currency_lifecycle(api, admin_headers):
    response = api.post(
        "/api/v1/admin/currencies",
        json={"code": "gbp", "name_en": "Pound sterling", "name_zh": "英镑", "methods": ["bank_transfer"]},
        headers=admin_headers,
    )
    created = response.get_json()
    assert response.status_code == 201, created
    assert created == {
        "id": created["id"],
        "code": "GBP",
        "name_en": "Pound sterling",
        "name_zh": "英镑",
        "methods": ["bank_transfer"],
        "enabled": True,
        "sort_order": 0,
    }
    url = f"/api/v1/admin/currencies/{created['id']}"
    assert api.get(url, headers=admin_headers).get_json() == created
    assert "GBP" in currency_codes(api, "?method=bank_transfer")
    assert "GBP" not in currency_codes(api, "?method=cryptocurrency")

    response = api.put(url, json={"name_en": "British pound", "sort_order": 99}, headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {**created, "name_en": "British pound", "sort_order": 99}
    assert currency_codes(api)[-1] == "GBP"

    response = api.delete(url, headers=admin_headers)
    assert response.status_code == 204
    assert response.data == b""
    assert_error(api.get(url, headers=admin_headers), 404, "not_found")
    assert_error(api.put(url, json={"name_en": "x"}, headers=admin_headers), 404, "not_found")
    assert_error(api.delete(url, headers=admin_headers), 404, "not_found")
    assert "GBP" not in currency_codes(api)
    assert [a for a in audit_actions() if a.startswith("currency.")] == [
        "currency.create",
        "currency.update",
        "currency.delete",
    ]


@pytest.mark.parametrize("code", ["USD", "usd", "Usd"])
def test_a_duplicate_currency_code_is_409_and_writes_nothing(api, admin_headers, code):
    before, audit_before = table_counts(), audit_actions()
    response = api.post(
        "/api/v1/admin/currencies",
        json={"code": code, "name_en": "Dollar again", "name_zh": "美元"},
        headers=admin_headers,
    )
    assert_error(response, 409, "currency_exists", "code")
    assert table_counts() == before
    assert audit_actions() == audit_before


def test_renaming_a_currency_onto_another_code_is_409_and_changes_nothing(api, admin_headers):
    eur = committed(sa.select(Currency.id).where(Currency.code == "EUR"))[0][0]
    response = api.put(f"/api/v1/admin/currencies/{eur}", json={"code": "usd", "name_en": "X"}, headers=admin_headers)
    assert_error(response, 409, "currency_exists", "code")
    assert committed(sa.select(Currency.code, Currency.name_en).where(Currency.id == eur)) == [("EUR", "Euro")]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"code": "GBP", "name_en": "Pound"}, "name_zh"),
        ({"name_en": "Pound", "name_zh": "英镑"}, "code"),
        ({"code": "G$P", "name_en": "Pound", "name_zh": "英镑"}, "code"),
        ({"code": "GBP", "name_en": "", "name_zh": "英镑"}, "name_en"),
        ({"code": "GBP", "name_en": "Pound", "name_zh": "英镑", "methods": ["paypal"]}, "methods"),
        ({"code": "GBP", "name_en": "Pound", "name_zh": "英镑", "methods": "bank_transfer"}, "methods"),
        ({"code": "GBP", "name_en": "Pound", "name_zh": "英镑", "sort_order": -1}, "sort_order"),
        ({"code": "GBP", "name_en": "Pound", "name_zh": "英镑", "rate": "7.1"}, "rate"),
        ({"code": "GBP", "name_en": "Pound", "name_zh": "英镑", "id": 77}, "id"),
    ],
)
def test_bad_currency_bodies_are_422_and_write_nothing(api, admin_headers, payload, field):
    before = table_counts()
    assert_error(
        api.post("/api/v1/admin/currencies", json=payload, headers=admin_headers), 422, "validation_error", field
    )
    assert table_counts() == before


def test_currency_admin_routes_refuse_clients(api, client_headers):
    assert_error(api.get("/api/v1/admin/currencies", headers=client_headers), 403, "forbidden")
    response = api.post(
        "/api/v1/admin/currencies", json={"code": "GBP", "name_en": "P", "name_zh": "英"}, headers=client_headers
    )
    assert_error(response, 403, "forbidden")
    assert_error(api.delete("/api/v1/admin/currencies/1", headers=client_headers), 403, "forbidden")
    assert committed(sa.select(sa.func.count()).select_from(Currency))[0][0] == 5


# #3, #4, #12: permissions and menus ----------------------------------------------------


def walk(nodes, parent_id=0):
    for node in nodes:
        yield node, parent_id
        yield from walk(node["children"], node["id"])


def demo_menu_keys(entries):
    return [(key, demo_menu_keys(children)) for key, _title, _path, _icon, children in entries]


def tree_keys(nodes):
    return [(node["key"], tree_keys(node["children"])) for node in nodes]


def assert_menu_tree(menus, user_type):
    assert menus, "no menus"
    for node, parent_id in walk(menus):
        assert set(node) == MENU_FIELDS, node
        assert node["parent_id"] == parent_id, node
        assert node["user_type"] == user_type
        assert node["status"] == 1
        orders = [child["sort_order"] for child in node["children"]]
        assert orders == sorted(orders)
    roots = [node["sort_order"] for node in menus]
    assert roots == sorted(roots)
    assert all(node["parent_id"] == 0 for node in menus)


@pytest.mark.parametrize("user_type", ["admin", "ib", "client"])
def test_permissions_answer_the_seed_shape_for_each_user_type(api, demo, user_type):
    credentials = {"admin": DEMO_ADMIN, "ib": (DEMO_IB, DEMO_PASSWORD), "client": (DEMO_CLIENT, DEMO_PASSWORD)}
    headers = bearer(api, *credentials[user_type])
    response = api.get("/api/v1/auth/permissions", headers=headers)
    body = response.get_json()
    assert response.status_code == 200, body
    assert set(body) == {"actions", "menus"}
    assert_seed_shape(body, seed_response("#3"))

    expected_actions = {key: (title, path, set(methods)) for key, title, path, methods in ACTIONS[user_type]}
    assert set(body["actions"]) == set(expected_actions)
    for key, action in body["actions"].items():
        assert set(action) == ACTION_FIELDS
        title, path, methods = expected_actions[key]
        assert (action["title"], action["path"], action["url"]) == (title, path, path)
        assert action["methods"] == {method: True for method in methods}

    assert_menu_tree(body["menus"], user_type)
    assert tree_keys(body["menus"]) == demo_menu_keys(MENUS[user_type])

    menus = api.get("/api/v1/menus", headers=headers)
    assert menus.status_code == 200
    assert menus.get_json() == {"list": body["menus"]}
    assert_seed_shape(menus.get_json(), seed_response("#4"))


@pytest.mark.parametrize("who", ["client_headers", "ib_headers"])
def test_client_permissions_answer_the_client_portal_for_clients_and_ibs(api, request, who, client_headers):
    headers = request.getfixturevalue(who)
    response = api.get("/api/v1/client/permissions", headers=headers)
    body = response.get_json()
    assert response.status_code == 200, body
    assert_seed_shape(body, seed_response("#12"))
    assert body == api.get("/api/v1/auth/permissions", headers=client_headers).get_json()
    assert all(node["user_type"] == "client" for node, _ in walk(body["menus"]))


def test_client_permissions_are_403_for_an_admin(api, admin_headers):
    assert_error(api.get("/api/v1/client/permissions", headers=admin_headers), 403, "forbidden")


def test_permissions_and_menus_need_a_token(api, demo):
    for url in ("/api/v1/auth/permissions", "/api/v1/menus", "/api/v1/client/permissions"):
        assert_error(api.get(url), 401, "unauthorized")


def test_menus_follow_sort_order_not_insertion_order(api, client_headers):
    db.session.execute(sa.update(Menu).where(Menu.user_type == "client", Menu.key == "platforms").values(sort_order=-5))
    db.session.execute(
        sa.update(Menu).where(Menu.user_type == "client", Menu.key == "funds.transfer").values(sort_order=-1)
    )
    db.session.commit()
    menus = api.get("/api/v1/menus", headers=client_headers).get_json()["list"]
    assert menus[0]["key"] == "platforms"
    funds = next(node for node in menus if node["key"] == "funds")
    assert funds["children"][0]["key"] == "funds.transfer"
    assert_menu_tree(menus, "client")


def test_hidden_menus_are_not_shown(api, client_headers):
    db.session.execute(sa.update(Menu).where(Menu.user_type == "client", Menu.key == "kyc").values(status=0))
    db.session.execute(sa.update(Menu).where(Menu.user_type == "client", Menu.key == "accounts.open").values(status=0))
    db.session.commit()
    menus = api.get("/api/v1/menus", headers=client_headers).get_json()["list"]
    keys = {node["key"] for node, _ in walk(menus)}
    assert "kyc" not in keys and "accounts.open" not in keys
    assert {"dashboard", "accounts", "accounts.list", "funds"} <= keys
    assert_menu_tree(menus, "client")
    permissions = api.get("/api/v1/auth/permissions", headers=client_headers).get_json()
    assert permissions["menus"] == menus


def test_children_of_a_hidden_menu_are_not_shown(api, client_headers):
    db.session.execute(sa.update(Menu).where(Menu.user_type == "client", Menu.key == "funds").values(status=0))
    db.session.commit()
    menus = api.get("/api/v1/menus", headers=client_headers).get_json()["list"]
    keys = {node["key"] for node, _ in walk(menus)}
    assert not {k for k in keys if k.startswith("funds")}, keys
    assert all(node["parent_id"] == 0 for node in menus)


# The demo seed -------------------------------------------------------------------------


def test_seed_demo_twice_changes_nothing(api, demo):
    counts = table_counts()
    assert counts["menus"] == sum(1 for _ in walk_demo(MENUS))
    assert counts["permission_actions"] == sum(len(entries) for entries in ACTIONS.values())
    assert counts["currencies"] == 5
    assert counts["users"] == 3
    snapshot = {
        "menus": committed(sa.select(Menu.__table__).order_by(Menu.id)),
        "actions": committed(sa.select(PermissionAction.__table__).order_by(PermissionAction.id)),
        "currencies": committed(sa.select(Currency.__table__).order_by(Currency.id)),
        "settings": committed(sa.select(BrokerSetting.key, BrokerSetting.value).order_by(BrokerSetting.key)),
    }
    seed_demo()
    assert table_counts() == counts
    assert {
        "menus": committed(sa.select(Menu.__table__).order_by(Menu.id)),
        "actions": committed(sa.select(PermissionAction.__table__).order_by(PermissionAction.id)),
        "currencies": committed(sa.select(Currency.__table__).order_by(Currency.id)),
        "settings": committed(sa.select(BrokerSetting.key, BrokerSetting.value).order_by(BrokerSetting.key)),
    } == snapshot


def walk_demo(menus):
    def walk_entries(entries):
        for entry in entries:
            yield entry
            yield from walk_entries(entry[4])

    for entries in menus.values():
        yield from walk_entries(entries)


def test_seed_demo_again_keeps_what_an_admin_changed(api, admin_headers):
    api.put("/api/v1/admin/config/broker", json={"support_phone": "+1 555"}, headers=admin_headers)
    usd = committed(sa.select(Currency.id).where(Currency.code == "USD"))[0][0]
    api.put(f"/api/v1/admin/currencies/{usd}", json={"enabled": False}, headers=admin_headers)
    seed_demo()
    assert api.get("/api/v1/config/broker").get_json()["support_phone"] == "+1 555"
    assert "USD" not in currency_codes(api)


# Localized errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "language, expected",
    [
        ("zh-CN", "部分字段无效。"),
        ("zh-TW", "部分欄位無效。"),
        ("zh-Hant-HK", "部分欄位無效。"),
        ("zh", "部分字段无效。"),
        ("fr-FR, zh-TW;q=0.5", "部分欄位無效。"),
        ("en-US,zh-CN;q=0.8", "Some fields are invalid."),
        ("de", "Some fields are invalid."),
        ("", "Some fields are invalid."),
    ],
)
def test_validation_errors_speak_the_callers_language(api, demo, language, expected):
    response = api.get("/api/v1/currencies?method=paypal", headers={"Accept-Language": language})
    assert_error(response, 422, "validation_error", "method")
    assert response.get_json()["message"] == expected


@pytest.mark.parametrize(
    "language, forbidden, unauthorized, not_found, exists, unknown",
    [
        ("zh-CN", "您无权执行此操作。", "需要登录。", "未找到。", "该货币已存在。", "未知字段。"),
        ("zh-TW", "您無權執行此操作。", "需要登入。", "找不到。", "該貨幣已存在。", "未知欄位。"),
    ],
)
def test_every_kind_of_error_is_localized(
    api, admin_headers, client_headers, language, forbidden, unauthorized, not_found, exists, unknown
):
    lang = {"Accept-Language": language}
    message = lambda response: response.get_json()["message"]  # noqa: E731

    assert message(api.get("/api/v1/admin/currencies", headers={**client_headers, **lang})) == forbidden
    assert message(api.get("/api/v1/menus", headers=lang)) == unauthorized
    assert message(api.get("/api/v1/admin/currencies/999", headers={**admin_headers, **lang})) == not_found
    duplicate = api.post(
        "/api/v1/admin/currencies",
        json={"code": "USD", "name_en": "Dollar", "name_zh": "美元"},
        headers={**admin_headers, **lang},
    )
    assert duplicate.status_code == 409 and message(duplicate) == exists
    unknown_field = api.put("/api/v1/admin/config/broker", json={"colour": "red"}, headers={**admin_headers, **lang})
    assert unknown_field.status_code == 422
    assert unknown_field.get_json()["errors"] == {"colour": [unknown]}


def test_accept_language_quality_values_choose_the_language(api, demo):
    response = api.get("/api/v1/currencies?method=paypal", headers={"Accept-Language": "en;q=0.1, zh-CN;q=0.9"})
    assert response.get_json()["message"] == "部分字段无效。"
