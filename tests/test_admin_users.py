"""Back office: user search, creation, enable/disable, IB promotion, the IB tree, the audit log."""

import contextvars
import re
import threading
import time

import pytest
import sqlalchemy as sa

from crm_app.admin.models import AuditLog
from crm_app.auth.models import AuthSession, IbTreePath, User
from crm_app.auth.tree import descendants_of
from crm_app.extensions import db
from tests.support.factory import PASSWORD

UA = "pytest-admin-agent/1.0"


class Api:
    """The test client, but every request runs in its own app context, as in production.

    The `factory` fixture keeps an app context open for the whole test; a request made
    inside it would share the test's SQLAlchemy session and skip the per-request
    teardown, so a refused request's uncommitted changes could leak into the next one.
    """

    def __init__(self, client):
        self.client = client

    def open(self, method, url, **kwargs):
        return contextvars.Context().run(self.client.open, url, method=method, **kwargs)

    def get(self, url, **kw):
        return self.open("GET", url, **kw)

    def post(self, url, **kw):
        return self.open("POST", url, **kw)

    def patch(self, url, **kw):
        return self.open("PATCH", url, **kw)

    def put(self, url, **kw):
        return self.open("PUT", url, **kw)

    def delete(self, url, **kw):
        return self.open("DELETE", url, **kw)


@pytest.fixture
def api(client):
    return Api(client)


@pytest.fixture
def admin(factory):
    return factory.admin(email="root@example.test", first_name="Root", last_name="Admin")


@pytest.fixture
def admin_headers(client, factory, admin):
    return {**factory.headers(client, admin), "User-Agent": UA}


def committed(statement):
    """Rows as another connection sees them: only what was committed."""
    with db.engine.connect() as conn:
        return conn.execute(statement).all()


def committed_user(user_id):
    rows = committed(sa.select(User.__table__).where(User.id == user_id))
    return rows[0]._mapping if rows else None


def tree_rows():
    return set(committed(sa.select(IbTreePath.ancestor_id, IbTreePath.descendant_id, IbTreePath.depth)))


def parents():
    return dict(committed(sa.select(User.id, User.parent_ib_id)))


def expected_closure(parent_of):
    """The closure table the parent pointers imply: (ancestor, descendant, depth)."""
    rows = set()
    for user_id in parent_of:
        node, depth, seen = user_id, 0, set()
        while node is not None:
            assert node not in seen, f"cycle through user {node}"
            seen.add(node)
            rows.add((node, user_id, depth))
            node, depth = parent_of[node], depth + 1
    return rows


def assert_tree_consistent():
    assert tree_rows() == expected_closure(parents())


def below(ib):
    db.session.expire_all()
    return [u.id for u in descendants_of(ib.id)]


def counts():
    return {
        "users": committed(sa.select(sa.func.count()).select_from(User))[0][0],
        "paths": committed(sa.select(sa.func.count()).select_from(IbTreePath))[0][0],
        "audit": committed(sa.select(sa.func.count()).select_from(AuditLog))[0][0],
    }


def assert_error(response, status, code, field=None):
    body = response.get_json()
    assert response.status_code == status, body
    assert body["code"] == code, body
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], dict)
    if field is not None:
        assert field in body["errors"], body


# Search -----------------------------------------------------------------------


def test_user_list_is_newest_first_with_exact_total_and_pages(api, factory, admin, admin_headers):
    created = [factory.user().id for _ in range(24)]
    all_ids = sorted([admin.id, *created], reverse=True)

    seen = []
    for page in (1, 2, 3):
        response = api.get(f"/api/v1/admin/users?page={page}&size=10", headers=admin_headers)
        body = response.get_json()
        assert response.status_code == 200, body
        assert body["total"] == 25
        seen += [u["id"] for u in body["list"]]
    assert seen == all_ids

    beyond = api.get("/api/v1/admin/users?page=4&size=10", headers=admin_headers).get_json()
    assert beyond == {"list": [], "total": 25}
    default = api.get("/api/v1/admin/users", headers=admin_headers).get_json()
    assert len(default["list"]) == 20 and default["total"] == 25
    assert api.get("/api/v1/admin/users?size=200", headers=admin_headers).status_code == 200


def test_user_list_item_has_the_documented_fields_and_no_secrets(api, factory, admin, admin_headers):
    ib = factory.ib(first_name="Iris", last_name="Broker")
    body = api.get(f"/api/v1/admin/users?q={ib.email}", headers=admin_headers).get_json()
    assert body["total"] == 1
    item = body["list"][0]
    assert set(item) == {
        "id",
        "email",
        "first_name",
        "last_name",
        "full_name",
        "user_type",
        "status",
        "parent_ib_id",
        "referral_code",
        "created_at",
        "last_login_at",
    }
    assert item["full_name"] == "Iris Broker"
    assert item["referral_code"] == ib.referral_code
    assert item["last_login_at"] is None
    assert len(item["created_at"]) == 19  # YYYY-MM-DD HH:MM:SS


def test_search_q_matches_part_of_email_or_name_case_insensitively(api, factory, admin, admin_headers):
    alice = factory.user(email="Alice.Wong@Example.test", first_name="Alice", last_name="Wong")
    bob = factory.user(email="bob@example.test", first_name="Bob", last_name="Smithers")
    factory.user(email="carol@other.test", first_name="Carol", last_name="Jones")

    def search(q):
        response = api.get("/api/v1/admin/users", query_string={"q": q}, headers=admin_headers)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["total"] == len(body["list"])
        return {u["id"] for u in body["list"]}

    assert search("ice.wo") == {alice.id}
    assert search("ALICE") == {alice.id}
    assert search("smith") == {bob.id}
    assert search("WONG") == {alice.id}
    assert search("example.test") == {alice.id, bob.id, admin.id}
    assert search("nobody-here") == set()


def test_search_finds_an_ib_by_its_referral_code(api, factory, admin, admin_headers):
    ib = factory.ib()
    body = api.get("/api/v1/admin/users", query_string={"q": ib.referral_code.lower()}, headers=admin_headers)
    assert [u["id"] for u in body.get_json()["list"]] == [ib.id]


def test_search_q_treats_like_wildcards_literally(api, factory, admin, admin_headers):
    underscored = factory.user(email="first_last@example.test")
    factory.user(email="firstxlast@example.test")
    body = api.get("/api/v1/admin/users", query_string={"q": "first_last"}, headers=admin_headers).get_json()
    assert [u["id"] for u in body["list"]] == [underscored.id]
    assert api.get("/api/v1/admin/users?q=%25", headers=admin_headers).get_json()["total"] == 0


def test_filters_by_user_type_status_and_parent_ib(api, factory, admin, admin_headers):
    ib = factory.ib()
    other_ib = factory.ib()
    c1 = factory.user(parent=ib)
    c2 = factory.user(parent=ib, status="disabled")
    c3 = factory.user(parent=other_ib)
    lone = factory.user()

    def ids(**query):
        body = api.get("/api/v1/admin/users", query_string=query, headers=admin_headers).get_json()
        assert body["total"] == len(body["list"])
        return {u["id"] for u in body["list"]}

    assert ids(user_type="client") == {c1.id, c2.id, c3.id, lone.id}
    assert ids(user_type="ib") == {ib.id, other_ib.id}
    assert ids(user_type="admin") == {admin.id}
    assert ids(status="disabled") == {c2.id}
    assert ids(parent_ib_id=ib.id) == {c1.id, c2.id}
    assert ids(parent_ib_id=ib.id, status="enabled") == {c1.id}
    assert ids(parent_ib_id=other_ib.id, user_type="ib") == set()
    assert ids(parent_ib_id=999999) == set()


@pytest.mark.parametrize(
    "query, field",
    [
        ("size=201", "size"),
        ("size=0", "size"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("user_type=root", "user_type"),
        ("status=banned", "status"),
        ("parent_ib_id=x", "parent_ib_id"),
    ],
)
def test_bad_search_parameters_are_422(api, admin_headers, query, field):
    assert_error(api.get(f"/api/v1/admin/users?{query}", headers=admin_headers), 422, "validation_error", field)


@pytest.mark.parametrize("path", ["/api/v1/admin/users", "/api/v1/admin/audit-logs"])
def test_search_parameters_the_list_does_not_take_are_ignored(api, admin_headers, path):
    """A browser's query string carries keys the route does not read (`_t=` cache-busters)."""
    plain = api.get(path, headers=admin_headers)
    stray = api.get(f"{path}?sort=id&verb=x&_t=1&user_type=&start_time=", headers=admin_headers)
    assert stray.status_code == plain.status_code == 200, stray.get_json()
    assert stray.get_json()["total"] == plain.get_json()["total"]


# Create -----------------------------------------------------------------------


def test_admin_creates_a_staff_user_who_can_sign_in(api, factory, admin, admin_headers):
    response = api.post(
        "/api/v1/admin/users",
        json={"email": "Staff@Example.test", "password": "Staff-Orchid-64", "user_type": "admin", "first_name": "Sam"},
        headers=admin_headers,
    )
    body = response.get_json()
    assert response.status_code == 201, body
    assert body["email"] == "Staff@Example.test"
    assert body["user_type"] == "admin" and body["status"] == "enabled"
    assert body["referral_code"] is None and body["parent_ib_id"] is None
    assert "password" not in body and "password_hash" not in body
    assert committed_user(body["id"])["email_key"] == "staff@example.test"
    assert (body["id"], body["id"], 0) in tree_rows()

    login = api.post("/api/v1/auth/login", json={"email": "staff@example.test", "password": "Staff-Orchid-64"})
    assert login.status_code == 200
    assert login.get_json()["user_info"]["user_type"] == "admin"

    entry = committed(sa.select(AuditLog.__table__).where(AuditLog.action == "user.create"))[-1]._mapping
    assert entry["actor_id"] == admin.id and entry["actor_email"] == admin.email
    assert entry["target_type"] == "user" and entry["target_id"] == str(body["id"])
    assert entry["ip"] == "127.0.0.1" and entry["user_agent"] == UA


def test_admin_creates_an_ib_which_gets_a_referral_code(api, admin_headers):
    response = api.post(
        "/api/v1/admin/users",
        json={"email": "partner@example.test", "password": "Partner-Cobalt-27", "user_type": "ib"},
        headers=admin_headers,
    )
    body = response.get_json()
    assert response.status_code == 201, body
    assert body["user_type"] == "ib"
    assert body["referral_code"] and body["referral_code"].isalnum()
    assert committed_user(body["id"])["referral_code"] == body["referral_code"]


def test_admin_creates_a_client_under_an_ib(api, factory, admin_headers):
    top = factory.ib()
    ib = factory.ib(parent=top)
    response = api.post(
        "/api/v1/admin/users",
        json={"email": "c@example.test", "password": "Client-Willow-85", "user_type": "client", "parent_ib_id": ib.id},
        headers=admin_headers,
    )
    body = response.get_json()
    assert response.status_code == 201, body
    assert body["user_type"] == "client" and body["referral_code"] is None
    assert body["parent_ib_id"] == ib.id
    assert below(ib) == [body["id"]]
    assert below(top) == [ib.id, body["id"]]
    assert {(top.id, body["id"], 2), (ib.id, body["id"], 1), (body["id"], body["id"], 0)} <= tree_rows()
    assert_tree_consistent()


def test_duplicate_email_in_another_case_is_422_email_taken_and_writes_nothing(api, factory, admin_headers):
    factory.user(email="taken@example.test")
    before = counts()
    response = api.post(
        "/api/v1/admin/users",
        json={"email": "TAKEN@Example.TEST", "password": "Quartz-Lantern-58", "user_type": "ib"},
        headers=admin_headers,
    )
    assert_error(response, 422, "email_taken", "email")
    assert counts() == before


@pytest.mark.parametrize(
    "password, rule",
    [
        ("short1", "password_too_short"),
        ("1234567890", "password_common"),
        ("Welcome12345", "password_guessable"),
        ("WEAK@example.test", "password_equals_email"),
        ("", "password_too_short"),
    ],
)
def test_weak_password_is_422_and_writes_nothing(api, admin_headers, password, rule):
    before = counts()
    response = api.post(
        "/api/v1/admin/users",
        json={"email": "weak@example.test", "password": password, "user_type": "client"},
        headers=admin_headers,
    )
    assert_error(response, 422, rule, "password")
    assert counts() == before


@pytest.mark.parametrize(
    "payload, code, field",
    [
        ({"password": "Quartz-Lantern-58", "user_type": "client"}, "validation_error", "email"),
        ({"email": "x@example.test", "user_type": "client"}, "validation_error", "password"),
        ({"email": "x@example.test", "password": "Quartz-Lantern-58"}, "validation_error", "user_type"),
        (
            {"email": "not-an-email", "password": "Quartz-Lantern-58", "user_type": "client"},
            "validation_error",
            "email",
        ),
        (
            {"email": "x@example.test", "password": "Quartz-Lantern-58", "user_type": "root"},
            "validation_error",
            "user_type",
        ),
        (
            {"email": "x@example.test", "password": "Quartz-Lantern-58", "user_type": "client", "is_admin": True},
            "validation_error",
            "is_admin",
        ),
        ({"email": "x@example.test", "password": 12345678, "user_type": "client"}, "validation_error", "password"),
    ],
)
def test_bad_create_bodies_are_422_and_write_nothing(api, admin_headers, payload, code, field):
    before = counts()
    response = api.post("/api/v1/admin/users", json=payload, headers=admin_headers)
    assert_error(response, 422, code, field)
    assert counts() == before


def test_create_under_a_parent_that_is_not_an_ib_is_422(api, factory, admin, admin_headers):
    client_user = factory.user()
    before = counts()
    for parent_id in (client_user.id, admin.id, 999999):
        response = api.post(
            "/api/v1/admin/users",
            json={
                "email": "kid@example.test",
                "password": "Quartz-Lantern-58",
                "user_type": "client",
                "parent_ib_id": parent_id,
            },
            headers=admin_headers,
        )
        assert_error(response, 422, "invalid_parent_ib", "parent_ib_id")
    assert counts() == before


def test_staff_user_cannot_have_a_parent_ib(api, factory, admin_headers):
    ib = factory.ib()
    before = counts()
    response = api.post(
        "/api/v1/admin/users",
        json={
            "email": "staff2@example.test",
            "password": "Quartz-Lantern-58",
            "user_type": "admin",
            "parent_ib_id": ib.id,
        },
        headers=admin_headers,
    )
    assert_error(response, 422, "invalid_parent_ib", "parent_ib_id")
    assert counts() == before


# One user -----------------------------------------------------------------------


def test_get_one_user_and_404_for_an_unknown_id(api, factory, admin_headers):
    ib = factory.ib(first_name="Ida")
    body = api.get(f"/api/v1/admin/users/{ib.id}", headers=admin_headers).get_json()
    assert body["id"] == ib.id and body["first_name"] == "Ida" and body["referral_code"] == ib.referral_code
    assert_error(api.get("/api/v1/admin/users/999999", headers=admin_headers), 404, "not_found")
    assert_error(
        api.patch("/api/v1/admin/users/999999", json={"status": "disabled"}, headers=admin_headers), 404, "not_found"
    )
    assert api.get("/api/v1/admin/users/abc", headers=admin_headers).status_code == 404


# Enable / disable ---------------------------------------------------------------


def test_disabling_a_user_kills_its_tokens_and_enabling_lets_it_sign_in_again(
    api, client, factory, admin, admin_headers
):
    user = factory.user()
    tokens = factory.login(client, user.email)
    user_headers = {"Authorization": f"Bearer {tokens['token']}"}
    assert api.get("/api/v1/menus", headers=user_headers).status_code == 200

    response = api.patch(f"/api/v1/admin/users/{user.id}", json={"status": "disabled"}, headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "disabled"
    assert committed_user(user.id)["status"] == "disabled"
    assert all(
        row.revoked_at is not None for row in committed(sa.select(AuthSession).where(AuthSession.user_id == user.id))
    )

    assert_error(api.get("/api/v1/menus", headers=user_headers), 401, "token_revoked")
    refresh = api.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert refresh.status_code == 401
    assert_error(api.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}), 403, "user_disabled")

    update = committed(sa.select(AuditLog.__table__).where(AuditLog.action == "user.update"))[-1]._mapping
    assert update["actor_id"] == admin.id and update["target_id"] == str(user.id)
    assert update["details"] == {"status": "disabled"}

    response = api.patch(f"/api/v1/admin/users/{user.id}", json={"status": "enabled"}, headers=admin_headers)
    assert response.status_code == 200 and response.get_json()["status"] == "enabled"
    assert api.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).status_code == 200
    # Tokens from before the disable stay dead.
    assert api.get("/api/v1/menus", headers=user_headers).status_code == 401


def test_admin_cannot_disable_itself(api, admin, admin_headers):
    before = counts()
    response = api.patch(f"/api/v1/admin/users/{admin.id}", json={"status": "disabled"}, headers=admin_headers)
    assert_error(response, 422, "validation_error", "status")
    assert committed_user(admin.id)["status"] == "enabled"
    assert counts() == before
    assert api.get("/api/v1/admin/users", headers=admin_headers).status_code == 200


def test_admin_can_disable_another_admin(api, factory, admin_headers):
    other = factory.admin()
    other_headers = factory.headers(api.client, other)
    response = api.patch(f"/api/v1/admin/users/{other.id}", json={"status": "disabled"}, headers=admin_headers)
    assert response.status_code == 200
    assert api.get("/api/v1/admin/users", headers=other_headers).status_code == 401


def test_patch_with_no_change_writes_no_audit_entry(api, factory, admin_headers):
    user = factory.user(first_name="Same")
    before = counts()
    response = api.patch(
        f"/api/v1/admin/users/{user.id}", json={"status": "enabled", "first_name": "Same"}, headers=admin_headers
    )
    assert response.status_code == 200
    assert counts() == before


def test_patch_renames_a_user(api, factory, admin_headers):
    user = factory.user(first_name="Old", last_name="Name")
    body = api.patch(f"/api/v1/admin/users/{user.id}", json={"first_name": "New"}, headers=admin_headers).get_json()
    assert body["first_name"] == "New" and body["last_name"] == "Name" and body["full_name"] == "New Name"


# User type ----------------------------------------------------------------------


def test_promoting_a_client_to_ib_generates_a_referral_code(api, factory, admin_headers):
    ib = factory.ib()
    user = factory.user(parent=ib)
    response = api.patch(f"/api/v1/admin/users/{user.id}", json={"user_type": "ib"}, headers=admin_headers)
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["user_type"] == "ib" and body["referral_code"]
    assert body["parent_ib_id"] == ib.id
    row = committed_user(user.id)
    assert row["user_type"] == "ib" and row["referral_code"] == body["referral_code"]

    # The new IB can take clients at once, and its code is an invitation.
    kid = api.post(
        "/api/v1/admin/users",
        json={
            "email": "kid@example.test",
            "password": "Quartz-Lantern-58",
            "user_type": "client",
            "parent_ib_id": user.id,
        },
        headers=admin_headers,
    )
    assert kid.status_code == 201, kid.get_json()
    assert below(ib) == [user.id, kid.get_json()["id"]]


def test_promoting_and_moving_in_one_request(api, factory, admin_headers):
    ib = factory.ib()
    user = factory.user()
    response = api.patch(
        f"/api/v1/admin/users/{user.id}", json={"user_type": "ib", "parent_ib_id": ib.id}, headers=admin_headers
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["parent_ib_id"] == ib.id and response.get_json()["user_type"] == "ib"
    assert_tree_consistent()


def test_admin_cannot_become_ib(api, factory, admin_headers):
    staff = factory.admin()
    before = counts()
    response = api.patch(f"/api/v1/admin/users/{staff.id}", json={"user_type": "ib"}, headers=admin_headers)
    assert_error(response, 422, "invalid_user_type_change", "user_type")
    assert committed_user(staff.id)["user_type"] == "admin"
    assert counts() == before


@pytest.mark.parametrize("target", ["client", "admin"])
def test_ib_cannot_be_turned_into_another_type(api, factory, admin_headers, target):
    ib = factory.ib()
    response = api.patch(f"/api/v1/admin/users/{ib.id}", json={"user_type": target}, headers=admin_headers)
    assert response.status_code == 422
    assert response.get_json()["code"] in ("validation_error", "invalid_user_type_change")
    assert "user_type" in response.get_json()["errors"]
    row = committed_user(ib.id)
    assert row["user_type"] == "ib" and row["referral_code"] == ib.referral_code


def test_ib_to_client_is_refused_as_invalid_user_type_change(api, factory, admin_headers):
    ib = factory.ib()
    response = api.patch(f"/api/v1/admin/users/{ib.id}", json={"user_type": "client"}, headers=admin_headers)
    assert_error(response, 422, "invalid_user_type_change", "user_type")


def test_refused_promotion_with_a_bad_parent_changes_nothing(api, factory, admin_headers):
    user = factory.user()
    other = factory.user()
    before = counts()
    response = api.patch(
        f"/api/v1/admin/users/{user.id}", json={"user_type": "ib", "parent_ib_id": other.id}, headers=admin_headers
    )
    assert_error(response, 422, "invalid_parent_ib", "parent_ib_id")
    row = committed_user(user.id)
    assert row["user_type"] == "client" and row["referral_code"] is None and row["parent_ib_id"] is None
    assert counts() == before
    # The refused change does not surface in a later request either.
    assert api.get(f"/api/v1/admin/users/{user.id}", headers=admin_headers).get_json()["user_type"] == "client"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"email": "new@example.test"}, "email"),
        ({"password": "Quartz-Lantern-58"}, "password"),
        ({"referral_code": "ABCDEFGH"}, "referral_code"),
        ({"token_version": 5}, "token_version"),
        ({"status": "banned"}, "status"),
        ({"parent_ib_id": "x"}, "parent_ib_id"),
    ],
)
def test_patch_refuses_unknown_or_bad_fields_and_changes_nothing(api, factory, admin_headers, payload, field):
    user = factory.user(email="keep@example.test")
    before_row = dict(committed_user(user.id))
    before = counts()
    response = api.patch(f"/api/v1/admin/users/{user.id}", json=payload, headers=admin_headers)
    assert_error(response, 422, "validation_error", field)
    assert dict(committed_user(user.id)) == before_row
    assert counts() == before


# The IB tree --------------------------------------------------------------------


def move(api, headers, user, parent_id):
    return api.patch(f"/api/v1/admin/users/{user.id}", json={"parent_ib_id": parent_id}, headers=headers)


def test_moving_a_client_to_another_ib_rewrites_its_paths(api, factory, admin_headers):
    top = factory.ib()
    ib1 = factory.ib(parent=top)
    ib2 = factory.ib()
    user = factory.user(parent=ib1)

    response = move(api, admin_headers, user, ib2.id)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["parent_ib_id"] == ib2.id
    assert committed_user(user.id)["parent_ib_id"] == ib2.id
    assert below(ib1) == [] and below(top) == [ib1.id]
    assert below(ib2) == [user.id]
    assert {r for r in tree_rows() if r[1] == user.id} == {(user.id, user.id, 0), (ib2.id, user.id, 1)}
    assert_tree_consistent()

    update = committed(sa.select(AuditLog.__table__).where(AuditLog.action == "user.update"))[-1]._mapping
    assert update["details"] == {"parent_ib_id": ib2.id}


def test_moving_an_ib_carries_its_whole_subtree(api, factory, admin_headers):
    root_a = factory.ib()
    mid = factory.ib(parent=root_a)
    sub = factory.ib(parent=mid)
    c1 = factory.user(parent=mid)
    c2 = factory.user(parent=sub)
    root_b = factory.ib()
    under_b = factory.ib(parent=root_b)

    response = move(api, admin_headers, mid, under_b.id)
    assert response.status_code == 200, response.get_json()

    assert below(root_a) == []
    assert below(root_b) == sorted([under_b.id, mid.id, sub.id, c1.id, c2.id])
    assert below(under_b) == sorted([mid.id, sub.id, c1.id, c2.id])
    assert below(mid) == sorted([sub.id, c1.id, c2.id])
    assert below(sub) == [c2.id]
    rows = tree_rows()
    assert (root_b.id, c2.id, 4) in rows and (under_b.id, c2.id, 3) in rows and (mid.id, c2.id, 2) in rows
    assert not any(r[0] == root_a.id and r[1] != root_a.id for r in rows)
    # Parent pointers inside the subtree are untouched.
    assert committed_user(sub.id)["parent_ib_id"] == mid.id
    assert committed_user(c2.id)["parent_ib_id"] == sub.id
    assert_tree_consistent()


def test_null_parent_detaches_the_subtree(api, factory, admin_headers):
    top = factory.ib()
    ib = factory.ib(parent=top)
    user = factory.user(parent=ib)
    response = move(api, admin_headers, ib, None)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["parent_ib_id"] is None
    assert below(top) == []
    assert below(ib) == [user.id]
    assert {r for r in tree_rows() if r[1] in (ib.id, user.id)} == {
        (ib.id, ib.id, 0),
        (user.id, user.id, 0),
        (ib.id, user.id, 1),
    }
    assert_tree_consistent()


@pytest.mark.parametrize("target", ["self", "child", "grandchild"])
def test_a_parent_that_would_make_a_cycle_is_422_and_changes_nothing(api, factory, admin_headers, target):
    top = factory.ib()
    ib = factory.ib(parent=top)
    child = factory.ib(parent=ib)
    grandchild = factory.ib(parent=child)
    factory.user(parent=grandchild)
    parent = {"self": ib, "child": child, "grandchild": grandchild}[target]
    rows_before, parents_before, before = tree_rows(), parents(), counts()

    assert_error(move(api, admin_headers, ib, parent.id), 422, "invalid_parent_ib", "parent_ib_id")
    assert tree_rows() == rows_before
    assert parents() == parents_before
    assert counts() == before
    assert api.get(f"/api/v1/admin/users/{ib.id}", headers=admin_headers).get_json()["parent_ib_id"] == top.id


def test_a_parent_that_is_not_an_ib_is_422_and_changes_nothing(api, factory, admin, admin_headers):
    ib = factory.ib()
    user = factory.user(parent=ib)
    plain = factory.user()
    rows_before, before = tree_rows(), counts()
    for parent_id in (plain.id, admin.id, 999999, -1):
        assert_error(move(api, admin_headers, user, parent_id), 422, "invalid_parent_ib", "parent_ib_id")
    assert tree_rows() == rows_before
    assert committed_user(user.id)["parent_ib_id"] == ib.id
    assert counts() == before


def test_a_staff_user_cannot_be_put_under_an_ib(api, factory, admin_headers):
    ib = factory.ib()
    staff = factory.admin()
    assert_error(move(api, admin_headers, staff, ib.id), 422, "invalid_parent_ib", "parent_ib_id")
    assert committed_user(staff.id)["parent_ib_id"] is None


def test_five_level_tree_built_by_moves_has_the_right_descendants_everywhere(api, factory, admin_headers):
    ibs = [factory.ib() for _ in range(5)]
    clients = [factory.user(parent=ib) for ib in ibs]
    # Chain the IBs bottom-up so each move carries an ever larger subtree.
    for upper, lower in reversed(list(zip(ibs, ibs[1:], strict=False))):
        response = move(api, admin_headers, lower, upper.id)
        assert response.status_code == 200, response.get_json()

    for level, ib in enumerate(ibs):
        expected = sorted([i.id for i in ibs[level + 1 :]] + [c.id for c in clients[level:]])
        assert below(ib) == expected, f"level {level + 1}"
    rows = tree_rows()
    assert (ibs[0].id, clients[4].id, 5) in rows
    assert (ibs[0].id, ibs[4].id, 4) in rows
    assert_tree_consistent()

    # Cut the chain in the middle: the lower half keeps its own shape.
    assert move(api, admin_headers, ibs[2], None).status_code == 200
    assert below(ibs[0]) == sorted([ibs[1].id, clients[0].id, clients[1].id])
    assert below(ibs[2]) == sorted([ibs[3].id, ibs[4].id, clients[2].id, clients[3].id, clients[4].id])
    assert_tree_consistent()

    # The old top may now go under the detached part, which is no longer below it; after that the
    # detached part's top cannot go under the old top's line.
    assert move(api, admin_headers, ibs[0], ibs[4].id).status_code == 200
    assert below(ibs[2]) == sorted([ibs[3].id, ibs[4].id, ibs[0].id, ibs[1].id] + [c.id for c in clients])
    assert_error(move(api, admin_headers, ibs[2], ibs[1].id), 422, "invalid_parent_ib")
    assert_tree_consistent()


def test_two_admins_making_a_cycle_at_once_get_one_success_and_one_422(app, api, factory, admin_headers, monkeypatch):
    import crm_app.auth.tree as tree

    a = factory.ib()
    a_kid = factory.ib(parent=a)
    b = factory.ib()
    b_kid = factory.ib(parent=b)
    arrived = []
    real_is_descendant = tree.is_descendant

    def other_request_waits_on_a_lock():
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        with db.engine.connect() as conn:
            return conn.execute(query).scalar() > 0

    def is_descendant_in_step(candidate_id, ancestor_id):
        """Both requests check before either writes (unless the app makes one wait for the other)."""
        answer = real_is_descendant(candidate_id, ancestor_id)
        arrived.append(candidate_id)
        deadline = time.monotonic() + 10
        while len(arrived) < 2 and time.monotonic() < deadline and not other_request_waits_on_a_lock():
            time.sleep(0.02)
        return answer

    monkeypatch.setattr(tree, "is_descendant", is_descendant_in_step)
    results = {}

    def run(name, user_id, parent_id):
        try:
            response = Api(app.test_client()).patch(
                f"/api/v1/admin/users/{user_id}", json={"parent_ib_id": parent_id}, headers=admin_headers
            )
            results[name] = response.status_code
        except Exception as exc:  # an unhandled error: what a 500 is in production
            results[name] = f"{type(exc).__name__}: {exc}"

    threads = [
        threading.Thread(target=run, args=("a", a.id, b_kid.id)),
        threading.Thread(target=run, args=("b", b.id, a_kid.id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(map(str, results.values())) == ["200", "422"], results
    assert_tree_consistent()


# Roles --------------------------------------------------------------------------


def admin_routes(app):
    """(method, url) of every /api/v1/admin route, path arguments filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/admin"):
            continue
        url = re.sub(r"<int:\w+>", "1", rule.rule)
        url = re.sub(r"<[^>]+>", "x", url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, url))
    return routes


def test_admin_routes_are_all_found(app):
    routes = set(admin_routes(app))
    assert {
        ("GET", "/api/v1/admin/users"),
        ("POST", "/api/v1/admin/users"),
        ("GET", "/api/v1/admin/users/1"),
        ("PATCH", "/api/v1/admin/users/1"),
        ("GET", "/api/v1/admin/audit-logs"),
    } <= routes


@pytest.mark.parametrize("user_type", ["client", "ib"])
def test_client_and_ib_tokens_are_403_on_every_admin_route(app, api, factory, user_type):
    user = factory.user(user_type)
    headers = factory.headers(api.client, user)
    before = counts()
    for method, url in admin_routes(app):
        response = api.open(method, url, json={}, headers=headers)
        assert response.status_code == 403, (method, url, response.get_json())
        assert response.get_json()["code"] == "forbidden", (method, url)
    after = counts()
    assert after == before


def test_no_token_is_401_on_every_admin_route(app, api):
    for method, url in admin_routes(app):
        response = api.open(method, url, json={})
        assert response.status_code == 401, (method, url, response.get_json())
        assert response.get_json()["code"] == "unauthorized"


def test_a_tampered_token_is_401(api, admin_headers):
    token = admin_headers["Authorization"]
    bad = {"Authorization": token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")}
    assert_error(api.get("/api/v1/admin/users", headers=bad), 401, "token_invalid")


# Audit log ----------------------------------------------------------------------


def audit(api, headers, **query):
    response = api.get("/api/v1/admin/audit-logs", query_string=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return body


def test_audit_log_records_logins_and_user_changes_with_actor_ip_and_agent(api, factory, admin):
    login = api.post(
        "/api/v1/auth/login",
        json={"email": admin.email, "password": PASSWORD},
        headers={"User-Agent": UA},
    )
    headers = {"Authorization": f"Bearer {login.get_json()['token']}", "User-Agent": UA}
    created = api.post(
        "/api/v1/admin/users",
        json={"email": "new@example.test", "password": "Quartz-Lantern-58", "user_type": "client"},
        headers=headers,
    ).get_json()
    api.patch(f"/api/v1/admin/users/{created['id']}", json={"status": "disabled"}, headers=headers)

    body = audit(api, headers)
    actions = [e["action"] for e in body["list"]]
    # Newest first; the factory's own creation of the admin (no actor) is the oldest.
    assert actions == ["user.update", "user.create", "auth.login", "user.create"]
    assert body["total"] == 4
    update, create, signin, bootstrap = body["list"]
    for entry in (update, create, signin):
        assert entry["actor_id"] == admin.id and entry["actor_email"] == admin.email
        assert entry["ip"] == "127.0.0.1" and entry["user_agent"] == UA
        assert entry["target_type"] == "user"
    assert update["target_id"] == create["target_id"] == str(created["id"])
    assert update["details"] == {"status": "disabled"}
    assert create["details"] == {"user_type": "client", "parent_ib_id": None}
    assert signin["target_id"] == str(admin.id)
    assert bootstrap["actor_id"] is None and bootstrap["ip"] is None
    assert set(update) == {
        "id",
        "actor_id",
        "actor_email",
        "action",
        "target_type",
        "target_id",
        "ip",
        "user_agent",
        "details",
        "created_at",
    }
    times = [e["created_at"] for e in body["list"]]
    assert times == sorted(times, reverse=True)
    ids = [e["id"] for e in body["list"]]
    assert ids == sorted(ids, reverse=True)


def test_audit_log_records_failed_and_refused_logins(api, factory, admin_headers):
    user = factory.user(status="disabled")
    api.post("/api/v1/auth/login", json={"email": "ghost@example.test", "password": "Wrong1234"})
    api.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    actions = [e["action"] for e in audit(api, admin_headers, action="auth.")["list"]]
    assert actions[:2] == ["auth.login_refused_disabled", "auth.login_failed"]


def seed_audit_rows(times):
    """Audit rows at known times (oldest first), as (action, actor, target_type)."""
    from crm_app.admin.services import record_audit_log

    made = []
    for when, action, actor, target_type in times:
        entry = record_audit_log(action, actor=actor, target_type=target_type, target_id=1)
        entry.created_at = when
        made.append(entry)
    db.session.commit()
    return [e.id for e in made]


def test_audit_log_filters_by_action_prefix_actor_target_and_time(api, factory, admin, admin_headers):
    from datetime import datetime

    other = factory.admin()
    db.session.execute(sa.delete(AuditLog))
    db.session.commit()
    ids = seed_audit_rows(
        [
            (datetime(2024, 1, 1, 8, 0, 0), "auth.login", admin, "user"),
            (datetime(2024, 1, 1, 9, 30, 0), "user.create", admin, "user"),
            (datetime(2024, 1, 2, 0, 0, 0), "auth.logout", other, "user"),
            (datetime(2024, 1, 3, 12, 0, 0), "config.broker.update", other, "config"),
            (datetime(2024, 1, 4, 23, 59, 59), "auth.login", other, "user"),
        ]
    )
    after = {"start_time": "2024-01-01 00:00:00"}  # excludes the admin's real login of this test

    def found(**query):
        body = audit(api, admin_headers, **{**after, **query})
        assert body["total"] == len(body["list"])
        return [e["id"] for e in body["list"]]

    assert found(end_time="2024-12-31 00:00:00") == ids[::-1]
    assert found(action="auth.", end_time="2024-12-31 00:00:00") == [ids[4], ids[2], ids[0]]
    assert found(action="config.") == [ids[3]]
    assert found(actor_id=other.id) == [ids[4], ids[3], ids[2]]
    assert found(actor_id=other.id, action="auth.") == [ids[4], ids[2]]
    assert found(target_type="config") == [ids[3]]
    assert found(start_time="2024-01-01 09:30:00", end_time="2024-01-02 00:00:00") == [ids[2], ids[1]]
    assert found(start_time="2024-01-04 23:59:59", end_time="2024-01-04 23:59:59") == [ids[4]]
    assert found(start_time="2023-01-01 00:00:00", end_time="2023-12-31 23:59:59") == []
    assert found(q=other.email.split("@")[0].upper(), end_time="2024-12-31 00:00:00") == [ids[4], ids[3], ids[2]]


def test_audit_log_exact_action_does_not_match_longer_actions(api, factory, admin, admin_headers):
    api.post("/api/v1/auth/login", json={"email": admin.email, "password": "Wrong1234"})
    body = audit(api, admin_headers, action="auth.login")
    assert {e["action"] for e in body["list"]} == {"auth.login"}


def test_audit_log_pages(api, factory, admin, admin_headers):
    for _ in range(6):
        factory.user()
    full = audit(api, admin_headers, size=200)
    assert full["total"] == 8  # 7 creations and the admin's login
    pages = [audit(api, admin_headers, page=p, size=3) for p in (1, 2, 3, 4)]
    assert [p["total"] for p in pages] == [8, 8, 8, 8]
    assert [len(p["list"]) for p in pages] == [3, 3, 2, 0]
    assert [e["id"] for p in pages for e in p["list"]] == [e["id"] for e in full["list"]]


@pytest.mark.parametrize(
    "query, field",
    [
        ("size=201", "size"),
        ("start_time=2024-13-01", "start_time"),
        ("start_time=2024-01-01T00:00:00", "start_time"),
        ("end_time=yesterday", "end_time"),
        ("actor_id=me", "actor_id"),
    ],
)
def test_bad_audit_log_parameters_are_422(api, admin_headers, query, field):
    assert_error(api.get(f"/api/v1/admin/audit-logs?{query}", headers=admin_headers), 422, "validation_error", field)
