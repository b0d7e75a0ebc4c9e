"""#45 answers ids that cannot be mistaken: `id` is the trading account's (what #46 takes),
null while a live application waits for review; the application's id is `application_id`
only. Before, a live application answered its application id as `id`, and #46 given that
number showed whichever of the caller's accounts had it."""

import copy

import sqlalchemy as sa

from crm_app.extensions import db
from crm_app.trading.models import AccountApplication, TradingAccount
from tests.support.trading import GOOD_INVESTOR, GOOD_PASSWORD, pending_application_id

URL = "/api/v1/client/trading-accounts"

# Copied from the seed (#45), example values and all.
SEED_45_OPEN_ACCOUNT = {
    "currency": "USD",
    "is_demo": True,
    "leverage": 0,
    "observe_password": "string",
    "password": "string",
    "trading_account_type_id": 0,
    "trading_platform": "MT4",
}


def seed_body(account_type, is_demo):
    """The seed's body with real values: the book's account types are on MT5 servers."""
    body = copy.deepcopy(SEED_45_OPEN_ACCOUNT)
    body.update(
        is_demo=is_demo,
        leverage=100,
        observe_password=GOOD_INVESTOR,
        password=GOOD_PASSWORD,
        trading_account_type_id=account_type["id"],
        trading_platform="MT5",
    )
    return body


def set_next_id(table, next_id):
    db.session.execute(
        sa.text("SELECT setval(pg_get_serial_sequence(:table, 'id'), :next_id, false)"),
        {"table": table, "next_id": next_id},
    )
    db.session.commit()


def test_a_demo_account_answers_its_own_id_which_46_reads(client, factory, book):
    headers = factory.headers(client, factory.user())
    response = client.post(URL, headers=headers, json=seed_body(book["demo_type"], is_demo=True))
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["status"] == "approved"
    assert answer["id"] is not None and answer["trading_account_id"] == answer["id"]

    application = db.session.get(AccountApplication, answer["application_id"])
    assert application.trading_account_id == answer["id"]
    detail = client.get(f"{URL}/{answer['id']}", headers=headers)
    assert detail.status_code == 200
    assert detail.get_json()["id"] == answer["id"] and detail.get_json()["is_demo"] is True
    assert [row["id"] for row in client.get(URL, headers=headers).get_json()["list"]] == [answer["id"]]


def test_a_live_application_answers_no_account_id_even_when_the_numbers_collide(client, factory, book):
    """The application's id is made equal to the id of the caller's demo account: #46 given
    that number shows the demo account, so the answer must not offer it as the account."""
    user = factory.user()
    factory.approved_kyc(user)
    headers = factory.headers(client, user)
    set_next_id("trading_accounts", 100)
    demo_id = client.post(URL, headers=headers, json=seed_body(book["demo_type"], is_demo=True)).get_json()["id"]
    set_next_id("account_applications", demo_id)

    response = client.post(URL, headers=headers, json=seed_body(book["live_type"], is_demo=False))
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["status"] == "pending"
    assert answer["id"] is None and answer["trading_account_id"] is None
    assert answer["application_id"] == demo_id  # the collision the old answer fell into
    application = db.session.get(AccountApplication, answer["application_id"])
    assert application.user_id == user.id and application.is_demo is False
    assert client.get(f"{URL}/{answer['application_id']}", headers=headers).get_json()["is_demo"] is True

    # Once approved, the account is another one, found in the list (#48).
    item_id = pending_application_id(client, book)
    approved = client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=book["admin_headers"], json={})
    assert approved.status_code == 200, approved.get_json()
    live_id = approved.get_json()["object"]["trading_account_id"]
    assert live_id != demo_id
    db.session.expire_all()
    assert db.session.get(AccountApplication, answer["application_id"]).trading_account_id == live_id
    assert db.session.get(TradingAccount, live_id).is_demo is False
    live_rows = client.get(f"{URL}?is_demo=false", headers=headers).get_json()["list"]
    assert [row["id"] for row in live_rows] == [live_id]


def test_the_openapi_answer_of_45_types_every_id(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    answer = spec["paths"]["/api/v1/client/trading-accounts"]["post"]["responses"]["201"]["content"]
    schema = answer["application/json"]["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    properties = schema["properties"]
    for name in ("id", "trading_account_id"):
        assert properties[name]["type"] == "integer" and properties[name]["nullable"] is True
    assert properties["application_id"]["type"] == "integer"
    assert "never" in properties["application_id"]["description"]
