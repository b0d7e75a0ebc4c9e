"""Trading accounts against the MT simulator over real HTTP, through the MT5 Web API adapter."""

import threading
from decimal import Decimal

import pytest

from tests.support.trading import (
    GOOD_INVESTOR,
    GOOD_PASSWORD,
    add_live_type,
    apply_live,
    open_demo,
    open_live,
    pending_application_id,
)


def test_demo_account_opens_at_once_on_the_trading_server(client, factory, book, sim):
    user = factory.user()
    headers = factory.headers(client, user)
    response = open_demo(client, headers, book)
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["status"] == "approved"

    detail = client.get(f"/api/v1/client/trading-accounts/{answer['id']}", headers=headers).get_json()
    assert detail["server_name"] == "Demo MT5"
    assert detail["trading_platform"] == "MT5"
    assert detail["is_demo"] is True
    assert detail["leverage"] == 100
    assert detail["password"] == "" and detail["observe_password"] == ""
    assert int(detail["account"]) == book["demo_server"]["next_login"]
    assert detail["figures_read_at"] is not None

    from crm_app.extensions import db
    from crm_app.trading.models import TradingAccount
    from crm_app.trading.services import gateway_for

    account = db.session.get(TradingAccount, answer["id"])
    gateway = gateway_for(account.server)
    info = gateway.get_account(account.login)
    assert info.group == "demo\\standard-usd"
    assert gateway.check_password(account.login, GOOD_PASSWORD, "main")
    assert gateway.check_password(account.login, GOOD_INVESTOR, "investor")


def test_account_types_show_only_demo_until_kyc_is_approved(client, factory, book):
    headers = factory.headers(client, factory.user())
    names = [
        t["name"]
        for t in client.get("/api/v1/client/trading-account-types?trading_platform=MT5", headers=headers).get_json()[
            "list"
        ]
    ]
    assert names == ["Demo Standard"]
    answer = client.get("/api/v1/client/trading-account-types?trading_platform=MT5", headers=headers).get_json()
    assert answer["list"][0]["leverage_options"] == [{"id": 1, "value": 100}, {"id": 2, "value": 200}]


def test_live_application_needs_approved_kyc(client, factory, book):
    headers = factory.headers(client, factory.user())
    response = apply_live(client, headers, book)
    assert response.status_code == 422
    assert response.get_json()["code"] == "account_type_not_open"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("password", "short1A"),
        ("password", "alllowercase1"),
        ("password", "NoDigitsHere"),
        ("leverage", 300),
        ("currency", "EUR"),
        ("trading_platform", "MT4"),
        ("trading_account_type_id", 999999),
    ],
)
def test_bad_demo_request_is_422_and_opens_nothing(client, factory, book, field, value):
    from sqlalchemy import func, select

    from crm_app.extensions import db
    from crm_app.trading.models import AccountApplication, TradingAccount

    headers = factory.headers(client, factory.user())
    response = open_demo(client, headers, book, **{field: value})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"]
    assert db.session.scalar(select(func.count()).select_from(TradingAccount)) == 0
    assert db.session.scalar(select(func.count()).select_from(AccountApplication)) == 0


def test_unknown_field_and_missing_fields_are_422(client, factory, book):
    headers = factory.headers(client, factory.user())
    assert open_demo(client, headers, book, group="real\\vip").status_code == 422
    response = client.post("/api/v1/client/trading-accounts", headers=headers, json={})
    assert response.status_code == 422
    assert {"password", "leverage", "is_demo", "trading_account_type_id"} <= set(response.get_json()["errors"])


def test_live_application_goes_to_review_and_approval_opens_one_account(client, factory, book, kyc_approved):
    user = factory.user()
    headers = factory.headers(client, user)
    response = client.post(
        "/api/v1/client/account-applications",
        headers=headers,
        json={
            "currency": "USD",
            "leverage": 200,
            "password": GOOD_PASSWORD,
            "observe_password": GOOD_INVESTOR,
            "trading_account_type_id": book["live_type"]["id"],
            "trading_platform": "MT5",
        },
    )
    assert response.status_code == 201, response.get_json()
    queue = client.get(
        "/api/v1/admin/audits?type=account_application&status=pending", headers=book["admin_headers"]
    ).get_json()
    assert queue["total"] == 1
    item = queue["list"][0]
    assert item["user"]["email"] == user.email

    approved = client.post(f"/api/v1/admin/audits/{item['id']}/approve", headers=book["admin_headers"], json={})
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["status"] == "approved"
    assert approved.get_json()["object"]["trading_account_id"]

    again = client.post(f"/api/v1/admin/audits/{item['id']}/approve", headers=book["admin_headers"], json={})
    assert again.status_code == 409
    rejected_after = client.post(
        f"/api/v1/admin/audits/{item['id']}/reject", headers=book["admin_headers"], json={"remark": "late"}
    )
    assert rejected_after.status_code == 409

    accounts = client.get("/api/v1/client/trading-accounts?is_demo=false", headers=headers).get_json()
    assert accounts["total"] == 1
    assert accounts["list"][0]["leverage"] == 200

    from crm_app.extensions import db
    from crm_app.trading.models import AccountApplication

    application = db.session.get(AccountApplication, response.get_json()["application_account_id"])
    db.session.refresh(application)
    assert application.main_password_encrypted is None, "passwords must be erased once the account exists"


def test_two_admins_approving_at_once_open_one_account(app, client, factory, book, kyc_approved):
    from sqlalchemy import func, select

    from crm_app.extensions import db
    from crm_app.trading.models import TradingAccount

    headers = factory.headers(client, factory.user())
    apply_live(client, headers, book)
    item_id = pending_application_id(client, book)
    second_admin_headers = factory.headers(client, factory.admin())
    statuses = []

    def approve(headers):
        # A client of its own per thread: two admins in two browsers.
        own_client = app.test_client()
        statuses.append(
            own_client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=headers, json={}).status_code
        )

    threads = [threading.Thread(target=approve, args=(h,)) for h in (book["admin_headers"], second_admin_headers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409]
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(TradingAccount)) == 1


def test_crash_after_server_created_account_is_adopted_not_doubled(client, factory, book, kyc_approved, monkeypatch):
    """The worker dies after the server opened the account but before our commit: the retry adopts it."""
    from sqlalchemy import func, select

    from crm_app.extensions import db
    from crm_app.trading import services
    from crm_app.trading.models import TradingAccount

    headers = factory.headers(client, factory.user())
    apply_live(client, headers, book)
    item_id = pending_application_id(client, book)

    real_record = services.record_created_account

    def crash(*args, **kwargs):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(services, "record_created_account", crash)
    with pytest.raises(RuntimeError):
        client.application.config["PROPAGATE_EXCEPTIONS"] = True
        try:
            client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=book["admin_headers"], json={})
        finally:
            client.application.config["PROPAGATE_EXCEPTIONS"] = None
    monkeypatch.setattr(services, "record_created_account", real_record)
    db.session.rollback()

    item = client.get(f"/api/v1/admin/audits/{item_id}", headers=book["admin_headers"]).get_json()
    assert item["status"] == "auditing" and "worker killed" in item["last_error"]
    retry = client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=book["admin_headers"], json={})
    assert retry.status_code == 200, retry.get_json()
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(TradingAccount)) == 1
    account = db.session.scalar(select(TradingAccount))
    assert account.login == book["live_server"]["next_login"]


def test_other_clients_account_is_404(client, factory, book):
    owner_headers = factory.headers(client, factory.user())
    account_id = open_demo(client, owner_headers, book).get_json()["id"]
    other_headers = factory.headers(client, factory.user())
    assert client.get(f"/api/v1/client/trading-accounts/{account_id}", headers=other_headers).status_code == 404
    response = client.put(
        "/api/v1/client/trading-accounts/password",
        headers=other_headers,
        json={"id": account_id, "type": "trade", "password": "Other1234x"},
    )
    assert response.status_code == 404


def test_password_change_reaches_the_trading_server(client, factory, book):
    from crm_app.extensions import db
    from crm_app.trading.models import TradingAccount
    from crm_app.trading.services import gateway_for

    headers = factory.headers(client, factory.user())
    account_id = open_demo(client, headers, book).get_json()["id"]
    for kind, new_password, mt_kind in (("trade", "Newtrade12", "main"), ("observe", "Newwatch12", "investor")):
        response = client.put(
            "/api/v1/client/trading-accounts/password",
            headers=headers,
            json={"id": account_id, "type": kind, "password": new_password},
        )
        assert response.status_code == 200, response.get_json()
        account = db.session.get(TradingAccount, account_id)
        assert gateway_for(account.server).check_password(account.login, new_password, mt_kind)
    weak = client.put(
        "/api/v1/client/trading-accounts/password",
        headers=headers,
        json={"id": account_id, "type": "trade", "password": "weak"},
    )
    assert weak.status_code == 422


def test_figures_come_from_the_server_and_survive_its_outage(client, factory, book, sim):
    headers = factory.headers(client, factory.user())
    account_id = open_demo(client, headers, book).get_json()["id"]

    from crm_app.extensions import db
    from crm_app.trading.models import TradingAccount
    from crm_app.trading.services import gateway_for

    account = db.session.get(TradingAccount, account_id)
    gateway_for(account.server).balance_operation(account.login, Decimal("1500.00"), "DEP#figures-test")
    live = client.get(f"/api/v1/client/trading-accounts/{account_id}", headers=headers).get_json()
    assert live["balance"] == "1500.00"
    assert live["equity"] == "1500.00"

    sim.faults(error_rate=1)
    try:
        stale = client.get(f"/api/v1/client/trading-accounts/{account_id}", headers=headers)
        listing = client.get("/api/v1/client/trading-accounts", headers=headers)
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert stale.status_code == 200
    assert stale.get_json()["balance"] == "1500.00"
    assert stale.get_json()["figures_read_at"] == live["figures_read_at"]
    assert listing.status_code == 200 and listing.get_json()["total"] == 1


def test_balances_filter_by_fund_direction(client, factory, book):
    """#13 with the seed's query strings: `type` is the picker's fund directions (deposit:
    deposit_only + normal; withdrawal: withdrawal_only + normal), and only live accounts are
    offered, since money never moves through a demo account (it would fail with
    `demo_account_not_allowed`)."""
    user = factory.user()
    factory.approved_kyc(user)
    headers = factory.headers(client, user)
    demo_id = open_demo(client, headers, book).get_json()["id"]  # a `normal` type on the demo server
    deposit_only = open_live(client, headers, book)  # the book's live type takes deposits only
    normal = open_live(client, headers, book, add_live_type(client, book, name="Live Both"))
    payout = add_live_type(client, book, name="Live Payout", direction="withdrawal_only")
    withdrawal_only = open_live(client, headers, book, payout)

    def listed(query):
        answer = client.get(f"/api/v1/client/balances?{query}", headers=headers)
        assert answer.status_code == 200, (query, answer.get_json())
        body = answer.get_json()
        assert body["total"] == len(body["list"])
        return [row["trading_account_id"] for row in body["list"]]

    assert listed("type[]=withdrawal_only&type[]=normal") == [normal, withdrawal_only]
    assert listed("type[]=deposit_only&type[]=normal") == [deposit_only, normal]
    assert listed("type=normal") == [normal]
    assert demo_id not in listed("type=deposit_only,withdrawal_only,normal")
    # The demo account is still the client's: the account list (#48) shows it.
    own = client.get("/api/v1/client/trading-accounts?page=1&size=20", headers=headers).get_json()
    assert demo_id in [row["id"] for row in own["list"]]
    assert client.get("/api/v1/client/balances?type=sideways", headers=headers).status_code == 422


def test_trading_server_admin_never_shows_the_manager_password(client, book):
    servers = client.get("/api/v1/admin/trading-servers", headers=book["admin_headers"]).get_json()
    assert servers["total"] == 2
    for row in servers["list"]:
        assert "manager_password" not in row and "manager_password_encrypted" not in row
        assert row["server_type"] in ("MT5-Demo", "MT5-Live")


def test_account_type_in_use_cannot_be_deleted(client, factory, book):
    headers = factory.headers(client, factory.user())
    open_demo(client, headers, book)
    response = client.delete(
        f"/api/v1/admin/trading-account-types/{book['demo_type']['id']}", headers=book["admin_headers"]
    )
    assert response.status_code == 409


def test_client_routes_need_a_token_and_admin_routes_an_admin(client, factory, book):
    assert client.get("/api/v1/client/trading-accounts").status_code == 401
    headers = factory.headers(client, factory.user())
    assert client.get("/api/v1/admin/trading-servers", headers=headers).status_code == 403
    assert client.get("/api/v1/client/trading-accounts", headers=book["admin_headers"]).status_code == 403


def test_platforms_are_listed_for_clients_and_ibs(client, factory, book):
    created = client.post(
        "/api/v1/admin/platforms",
        headers=book["admin_headers"],
        json={"name": "MetaTrader 5", "windows_download_url": "https://example.test/mt5.exe"},
    )
    assert created.status_code == 201
    for user in (factory.user(), factory.ib()):
        listing = client.get(
            "/api/v1/client/platforms" if user.user_type == "client" else "/api/v1/ib/platforms",
            headers=factory.headers(client, user),
        ).get_json()
        assert listing["total"] == 1 and listing["list"][0]["windows_download_url"].endswith("mt5.exe")


def test_figures_are_read_when_the_manager_may_not_read_group_settings(client, factory, book, sim):
    """#13: /api/group/get refused (retcode 8): the figures still refresh, in the account type's currency."""
    from crm_app.extensions import db
    from crm_app.integrations.trading.mt5_webapi import forget_pinned_sessions
    from crm_app.trading.models import TradingAccount
    from crm_app.trading.services import gateway_for

    headers = factory.headers(client, factory.user())
    account_id = open_demo(client, headers, book).get_json()["id"]
    account = db.session.get(TradingAccount, account_id)
    gateway_for(account.server).balance_operation(account.login, Decimal("750.00"), "DEP#no-group-rights")
    forget_pinned_sessions()  # nothing remembered of the group from earlier reads
    sim.sessions(refuse_group_reads=True)
    try:
        detail = client.get(f"/api/v1/client/trading-accounts/{account_id}", headers=headers)
        again = client.get(f"/api/v1/client/trading-accounts/{account_id}", headers=headers)
    finally:
        sim.sessions(refuse_group_reads=False)
    assert detail.status_code == 200
    body = detail.get_json()
    assert body["balance"] == "750.00" and body["equity"] == "750.00"
    assert body["currency"] == "USD"
    assert again.get_json()["figures_read_at"] is not None
