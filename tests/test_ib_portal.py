"""IB portal: the referral code, link and public QR code (#55), the IB's clients (#51) and
their trading accounts with live figures (#54). An IB never sees anyone outside its tree."""

import io
import itertools
import shutil
import subprocess
from datetime import datetime
from decimal import Decimal

import pytest
import segno

from crm_app.extensions import db
from crm_app.kyc.models import KycProfile
from crm_app.sync.models import SyncedDeal
from crm_app.trading.models import TradingAccount
from tests.support.trading import open_demo

logins = itertools.count(7_300_000)
tickets = itertools.count(1)


@pytest.fixture
def tree(factory, client):
    """ivy (IB1) > sam (IB2, a sub-IB) > carol, cathy; ivy > alice, albert (its own clients);
    otto (IB3) > dave; eve has no IB."""
    ivy = factory.ib(first_name="Ivy", last_name="One", email="ivy@example.test")
    sam = factory.ib(parent=ivy, first_name="Sam", last_name="Sub", email="sam@example.test")
    carol = factory.user(parent=sam, first_name="Carol", last_name="King", email="carol@example.test")
    cathy = factory.user(parent=sam, first_name="Cathy", last_name="Wu", email="cathy_w@example.test")
    alice = factory.user(parent=ivy, first_name="Alice", last_name="Smith", email="Alice.Smith@Example.test")
    albert = factory.user(parent=ivy, first_name="Albert", last_name="Jones", email="albert%x@example.test")
    otto = factory.ib(first_name="Otto", last_name="Three", email="otto@example.test")
    dave = factory.user(parent=otto, first_name="Dave", last_name="Smith", email="dave@example.test")
    eve = factory.user(first_name="Eve", email="eve@example.test")
    people = {
        "ivy": ivy,
        "sam": sam,
        "carol": carol,
        "cathy": cathy,
        "alice": alice,
        "albert": albert,
        "otto": otto,
        "dave": dave,
        "eve": eve,
    }
    headers = {name: factory.headers(client, people[name]) for name in ("ivy", "sam", "otto", "alice", "carol")}
    return {"users": people, "headers": headers}


def get(client, headers, path):
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    return answer


def emails(client, headers, query=""):
    answer = get(client, headers, f"/api/v1/ib/clients?{query}")
    return [row["email"] for row in answer["list"]]


def set_kyc(user, status):
    db.session.add(
        KycProfile(user_id=user.id, status=status, apply_status=status, data={}, completed_modules=[], kyc_way="manual")
    )
    db.session.commit()


# #55 Profile, referral link and QR code -----------------------------------------------


def test_profile_answers_the_referral_code_link_qr_url_and_the_ibs_kyc(client, tree):
    ivy = tree["users"]["ivy"]
    profile = get(client, tree["headers"]["ivy"], "/api/v1/ib/profile")
    code = ivy.referral_code
    assert profile["ReferralCode"] == code
    assert profile["ReferralLink"] == f"http://127.0.0.1:5000/register?invite_code={code}"
    assert profile["QRCodeURL"] == f"/api/v1/ib/referral-qr/{code}.png"
    # The KYC part is #50's shape.
    kyc = get(client, tree["headers"]["ivy"], "/api/v1/ib/kyc")
    assert {key: profile[key] for key in kyc} == kyc
    assert profile["kyc_status"] == "filling"
    assert set(profile) == set(kyc) | {"ReferralCode", "ReferralLink", "QRCodeURL"}


def test_profile_links_follow_the_configuration(app, client, tree, monkeypatch):
    monkeypatch.setitem(app.config, "IB_REFERRAL_URL", "https://join.broker.test/r/{code}?lang=en")
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://api.broker.test/")
    profile = get(client, tree["headers"]["ivy"], "/api/v1/ib/profile")
    code = profile["ReferralCode"]
    assert profile["ReferralLink"] == f"https://join.broker.test/r/{code}?lang=en"
    assert profile["QRCodeURL"] == f"https://api.broker.test/api/v1/ib/referral-qr/{code}.png"


def test_an_ib_without_a_code_is_given_one(client, tree):
    ivy = tree["users"]["ivy"]
    ivy.referral_code = None
    db.session.commit()
    code = get(client, tree["headers"]["ivy"], "/api/v1/ib/profile")["ReferralCode"]
    assert len(code) == 8 and code.isalnum()
    db.session.expire_all()
    assert db.session.get(type(ivy), ivy.id).referral_code == code
    assert get(client, tree["headers"]["ivy"], "/api/v1/ib/profile")["ReferralCode"] == code


def png_matrix(png, scale=8, border=4):
    """The dark/light modules of a QR code PNG, read at each module's centre."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    modules = image.width // scale - 2 * border
    assert image.width == image.height == (modules + 2 * border) * scale
    return tuple(
        tuple(
            image.getpixel(((border + col) * scale + scale // 2, (border + row) * scale + scale // 2)) < 128
            for col in range(modules)
        )
        for row in range(modules)
    )


def test_referral_qr_is_a_public_cacheable_png_of_the_referral_link(client, tree):
    profile = get(client, tree["headers"]["ivy"], "/api/v1/ib/profile")
    link = profile["ReferralLink"]
    response = client.get(profile["QRCodeURL"])  # no token
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    png = response.get_data()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert "public" in response.headers["Cache-Control"] and "max-age" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"

    # The image is exactly the QR code of the link: same modules as segno's symbol for it,
    # and not those of any other link.
    expected = segno.make(link, error="m", micro=False)
    assert png_matrix(png) == tuple(tuple(bool(m) for m in row) for row in expected.matrix)
    other = segno.make(link + "X", error="m", micro=False)
    assert png_matrix(png) != tuple(tuple(bool(m) for m in row) for row in other.matrix)
    if shutil.which("zbarimg"):
        decoded = subprocess.run(["zbarimg", "--raw", "-q", "-"], input=png, capture_output=True, check=True)
        assert decoded.stdout.decode().strip() == link

    again = client.get(profile["QRCodeURL"], headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    # Codes are case-insensitive, like at registration.
    lower = client.get(profile["QRCodeURL"].replace(profile["ReferralCode"], profile["ReferralCode"].lower()))
    assert lower.status_code == 200 and lower.get_data() == png


def test_referral_qr_of_an_unknown_or_unusable_code_is_404(client, tree, factory):
    for code in ("ZZZZ9999", "abc%24", "x" * 40):
        response = client.get(f"/api/v1/ib/referral-qr/{code}.png")
        assert response.status_code == 404, code
        assert response.get_json()["code"] == "not_found"
    # A disabled IB's code invites nobody any more.
    otto = tree["users"]["otto"]
    otto.status = "disabled"
    db.session.commit()
    assert client.get(f"/api/v1/ib/referral-qr/{otto.referral_code}.png").status_code == 404


def test_registering_with_the_profiles_code_puts_the_client_under_that_ib(client, tree):
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"register": False}})
    code = get(client, tree["headers"]["sam"], "/api/v1/ib/profile")["ReferralCode"]
    response = client.post(
        "/api/v1/auth/register",
        json={"email": "newbie@example.test", "password": "Quartz-Lantern-58", "invite_code": code.lower()},
    )
    assert response.status_code in (200, 201), response.get_json()
    newbie_id = response.get_json()["user_info"]["id"]

    rows = get(client, tree["headers"]["sam"], "/api/v1/ib/clients")["list"]
    assert rows[0]["client_user_id"] == newbie_id and rows[0]["source"] == "direct"
    # Sam's upline sees the newcomer only when it asks for the whole tree.
    assert "newbie@example.test" not in emails(client, tree["headers"]["ivy"])
    row = get(client, tree["headers"]["ivy"], f"/api/v1/ib/clients?scope=all&client_user_id={newbie_id}")["list"][0]
    assert (row["source"], row["level"], row["ib_user_id"]) == ("sub_ib", 2, tree["users"]["sam"].id)
    assert "newbie@example.test" not in emails(client, tree["headers"]["otto"], "scope=all")


# #51 Clients --------------------------------------------------------------------------


def test_clients_direct_by_default_and_the_whole_tree_with_scope_all(client, tree):
    users = tree["users"]
    ivy_headers = tree["headers"]["ivy"]
    direct = get(client, ivy_headers, "/api/v1/ib/clients")
    assert [row["email"] for row in direct["list"]] == [users[n].email for n in ("albert", "alice", "sam")]
    assert direct["total"] == 3
    assert emails(client, ivy_headers, "scope=direct") == emails(client, ivy_headers)

    everyone = get(client, ivy_headers, "/api/v1/ib/clients?scope=all")
    by_name = {row["first_name"]: row for row in everyone["list"]}
    assert sorted(by_name) == ["Albert", "Alice", "Carol", "Cathy", "Sam"]
    assert everyone["total"] == 5
    carol = by_name["Carol"]
    assert carol["level"] == 2 and carol["source"] == "sub_ib"
    assert carol["ib_user_id"] == users["sam"].id and carol["ib_user_name"] == "Sam Sub"
    sam = by_name["Sam"]
    assert (sam["level"], sam["source"], sam["user_type"]) == (1, "direct", "ib")
    alice = by_name["Alice"]
    assert alice["client_id"] == alice["client_user_id"] == users["alice"].id
    assert alice["full_name"] == "Alice Smith" and alice["last_name"] == "Smith"
    assert alice["account"] == alice["email"] == "Alice.Smith@Example.test"
    assert alice["kyc_status"] == "filling" and alice["status"] == "enabled"
    assert alice["latest_trade_time"] is None
    assert len(alice["created_at"]) == 19 and len(alice["updated_at"]) == 19

    # The sub-IB sees its own branch; another IB only its own; nobody sees eve or an upline.
    assert sorted(emails(client, tree["headers"]["sam"], "scope=all")) == ["carol@example.test", "cathy_w@example.test"]
    assert emails(client, tree["headers"]["otto"], "scope=all") == ["dave@example.test"]


def test_clients_never_leak_outside_the_tree_through_filters(client, tree):
    users = tree["users"]
    ivy_headers = tree["headers"]["ivy"]
    for outsider in ("dave", "eve", "otto", "ivy"):
        assert emails(client, ivy_headers, f"scope=all&client_user_id={users[outsider].id}") == []
    assert emails(client, ivy_headers, "scope=all&email=dave") == []
    assert emails(client, ivy_headers, "scope=all&client_name=Dave") == []
    # Smith: alice is ivy's, dave is otto's.
    assert emails(client, ivy_headers, "scope=all&client_name=smith") == ["Alice.Smith@Example.test"]
    assert emails(client, tree["headers"]["otto"], "scope=all&client_name=smith") == ["dave@example.test"]
    # Below the IB but not its own client: only with scope=all.
    assert emails(client, ivy_headers, f"client_user_id={users['carol'].id}") == []
    assert emails(client, ivy_headers, f"scope=all&client_user_id={users['carol'].id}") == ["carol@example.test"]


def test_client_filters(client, tree):
    users = tree["users"]
    ivy_headers = tree["headers"]["ivy"]
    set_kyc(users["alice"], "approved")
    set_kyc(users["carol"], "pending")
    set_kyc(users["cathy"], "rejected")
    users["albert"].status = "disabled"
    db.session.commit()

    def names(query):
        return sorted(row["first_name"] for row in get(client, ivy_headers, f"/api/v1/ib/clients?{query}")["list"])

    assert names("scope=all&kyc_status=approved") == ["Alice"]
    assert names("scope=all&kyc_status=disapproved") == ["Albert", "Carol", "Cathy", "Sam"]
    assert names("scope=all&kyc_status=pending") == ["Carol"]
    assert names("scope=all&kyc_status=rejected") == ["Cathy"]
    assert names("scope=all&kyc_status=filling") == ["Albert", "Sam"]
    assert names("kyc_status=disapproved") == ["Albert", "Sam"]
    rows = get(client, ivy_headers, "/api/v1/ib/clients?scope=all")["list"]
    assert {row["first_name"]: row["kyc_status"] for row in rows} == {
        "Alice": "approved",
        "Carol": "pending",
        "Cathy": "rejected",
        "Albert": "filling",
        "Sam": "filling",
    }

    assert names("scope=all&status=disabled") == ["Albert"]
    assert names("scope=all&status=enabled") == ["Alice", "Carol", "Cathy", "Sam"]
    assert names(f"scope=all&client_user_id={users['cathy'].id}") == ["Cathy"]

    # Email and name: partial, any case; LIKE wildcards match only themselves.
    assert names("scope=all&email=ALICE.smith") == ["Alice"]
    assert names("scope=all&email=example.test") == ["Albert", "Alice", "Carol", "Cathy", "Sam"]
    assert names("scope=all&email=%25") == ["Albert"]
    assert names("scope=all&email=_") == ["Cathy"]
    assert names("scope=all&email=c%25") == []
    assert names("scope=all&client_name=ca") == ["Carol", "Cathy"]
    assert names("scope=all&client_name=carol%20king") == ["Carol"]
    assert names("scope=all&client_name=%25") == []
    assert names("scope=all&client_name=") == ["Albert", "Alice", "Carol", "Cathy", "Sam"]
    assert names("scope=all&kyc_status=disapproved&status=enabled&client_name=a") == ["Carol", "Cathy", "Sam"]

    # Paging: newest first, exact total whatever the page.
    page = get(client, ivy_headers, "/api/v1/ib/clients?scope=all&size=2&page=2")
    assert page["total"] == 5 and [row["first_name"] for row in page["list"]] == ["Cathy", "Carol"]
    assert get(client, ivy_headers, "/api/v1/ib/clients?scope=all&size=2&page=9") == {"list": [], "total": 5}

    bad_queries = (
        "scope=everyone",
        "kyc_status=maybe",
        "status=gone",
        "client_user_id=x",
        "client_user_id=99999999999",
        "email=a%00b",
        "client_name=%00",
        "size=500",
    )
    for bad in bad_queries:
        response = client.get(f"/api/v1/ib/clients?{bad}", headers=ivy_headers)
        assert response.status_code == 422, bad
        assert response.get_json()["code"] == "validation_error"
    # A key the list does not read is ignored (a cache-buster), an empty filter is none.
    assert names("scope=all&colour=red&_t=1&kyc_status=&status=") == ["Albert", "Alice", "Carol", "Cathy", "Sam"]


def test_latest_trade_time_is_the_clients_newest_trade_deal(client, tree, book):
    alice = tree["users"]["alice"]
    first, second = account_for(alice, book), account_for(alice, book)
    deal(first, "buy", datetime(2026, 10, 1, 9, 30, 0))
    deal(second, "sell", datetime(2026, 10, 3, 14, 0, 5))
    deal(second, "balance", datetime(2026, 10, 9, 8, 0, 0))  # a deposit is no trade
    deal(account_for(tree["users"]["carol"], book), "buy", datetime(2026, 10, 5, 0, 0, 0))
    rows = get(client, tree["headers"]["ivy"], "/api/v1/ib/clients?scope=all")["list"]
    latest = {row["first_name"]: row["latest_trade_time"] for row in rows}
    # The broker's timezone is UTC here (no broker settings saved).
    assert latest == {
        "Alice": "2026-10-03 14:00:05",
        "Carol": "2026-10-05 00:00:00",
        "Albert": None,
        "Cathy": None,
        "Sam": None,
    }


# Roles ------------------------------------------------------------------------------


IB_ROUTES = ("/api/v1/ib/profile", "/api/v1/ib/clients", "/api/v1/ib/client-trading-accounts")


def test_ib_routes_need_an_ib_token(client, tree, factory):
    admin_headers = factory.headers(client, factory.admin())
    for path in IB_ROUTES:
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer nonsense"}).status_code == 401, path
        assert client.get(path, headers=tree["headers"]["alice"]).status_code == 403, path
        assert client.get(path, headers=admin_headers).status_code == 403, path
        assert client.get(path, headers=tree["headers"]["ivy"]).status_code == 200, path


# #54 Clients' trading accounts ---------------------------------------------------------


def account_for(user, book, account_type="demo_type", server="demo_server", **values):
    account = TradingAccount(
        user_id=user.id,
        server_id=book[server]["id"],
        account_type_id=book[account_type]["id"],
        login=next(logins),
        leverage=100,
        currency="USD",
        is_demo=server == "demo_server",
        **values,
    )
    db.session.add(account)
    db.session.commit()
    return account


def deal(account, action, when):
    db.session.add(
        SyncedDeal(
            server_id=account.server_id,
            ticket=next(tickets),
            login=account.login,
            trading_account_id=account.id,
            time=when,
            action=action,
            entry="in" if action in ("buy", "sell") else "none",
            symbol="EURUSD" if action in ("buy", "sell") else "",
        )
    )
    db.session.commit()


@pytest.fixture
def accounts(tree, book):
    """One account each, plus a live one for alice; ivy's own account is not a client's."""
    users = tree["users"]
    made = {name: account_for(users[name], book) for name in ("alice", "albert", "sam", "carol", "dave", "ivy")}
    made["alice_live"] = account_for(
        users["alice"], book, account_type="live_type", server="live_server", balance=Decimal("12.34")
    )
    return made


def account_ids(client, headers, query=""):
    answer = get(client, headers, f"/api/v1/ib/client-trading-accounts?{query}")
    assert answer["total"] == len(answer["list"]) or "size=" in query, answer
    return sorted(row["id"] for row in answer["list"])


def ids_of(accounts, *names):
    return sorted(accounts[name].id for name in names)


def test_client_accounts_cover_the_whole_tree_by_default(client, tree, accounts):
    ivy_headers = tree["headers"]["ivy"]
    everyone = ids_of(accounts, "alice", "alice_live", "albert", "sam", "carol")
    assert account_ids(client, ivy_headers) == everyone
    assert account_ids(client, ivy_headers, "scope=all") == everyone
    assert account_ids(client, ivy_headers, "scope=direct") == ids_of(accounts, "alice", "alice_live", "albert", "sam")
    assert account_ids(client, tree["headers"]["sam"]) == ids_of(accounts, "carol")
    assert account_ids(client, tree["headers"]["otto"]) == ids_of(accounts, "dave")

    rows = get(client, ivy_headers, "/api/v1/ib/client-trading-accounts")["list"]
    live = next(row for row in rows if row["id"] == accounts["alice_live"].id)
    assert live == {
        "account_id": str(accounts["alice_live"].login),
        # Unknown to the trading server: the last known figures stay, never read so far.
        "balance": "12.34",
        "credit": "0.00",
        "equity": "0.00",
        "id": accounts["alice_live"].id,
        "leverage": 100,
        "margin_level": "0.00",
        "trading_account_type_name": "Live Standard",
        "trading_platform": "MT5",
        "trading_server_name": "Live MT5",
        "user_name": "Alice Smith",
        "client_user_id": tree["users"]["alice"].id,
        "currency": "USD",
        "is_demo": False,
        "figures_read_at": None,
    }


def test_client_account_filters_never_reach_outside_the_tree(client, tree, accounts):
    ivy_headers = tree["headers"]["ivy"]
    dave_login = accounts["dave"].login
    assert account_ids(client, ivy_headers, f"account_id={dave_login}") == []
    assert account_ids(client, ivy_headers, f"account_id={accounts['ivy'].login}") == []
    assert account_ids(client, ivy_headers, f"account_id={accounts['carol'].login}") == ids_of(accounts, "carol")
    assert account_ids(client, ivy_headers, f"client_user_id={tree['users']['dave'].id}") == []
    assert account_ids(client, ivy_headers, "user_name=dave") == []
    assert account_ids(client, ivy_headers, "user_name=SMITH") == ids_of(accounts, "alice", "alice_live")
    assert account_ids(client, tree["headers"]["otto"], "user_name=smith") == ids_of(accounts, "dave")
    assert account_ids(client, ivy_headers, "user_name=cathy") == []
    assert account_ids(client, ivy_headers, "user_name=albert%25x") == ids_of(accounts, "albert")
    # `%` matches itself only: albert's email has one.
    assert account_ids(client, ivy_headers, "user_name=%25") == ids_of(accounts, "albert")
    assert account_ids(client, ivy_headers, "user_name=c%25") == []
    assert account_ids(client, ivy_headers, "trading_account_type_name=live standard") == ids_of(accounts, "alice_live")
    assert account_ids(client, ivy_headers, "trading_account_type_name=Demo Standard&scope=direct") == ids_of(
        accounts, "alice", "albert", "sam"
    )
    assert account_ids(client, ivy_headers, "trading_account_type_name=Standard") == []
    assert account_ids(client, ivy_headers, "is_demo=false") == ids_of(accounts, "alice_live")
    assert account_ids(client, ivy_headers, f"client_user_id={tree['users']['carol'].id}&scope=direct") == []

    page = get(client, ivy_headers, "/api/v1/ib/client-trading-accounts?size=2&page=1")
    assert page["total"] == 5
    assert [row["id"] for row in page["list"]] == ids_of(accounts, "alice_live", "carol")[::-1]

    # A login too large for any account names none (and never reaches the database).
    assert account_ids(client, ivy_headers, "account_id=999999999999999") == []
    for bad in ("account_id=12ab", "scope=none", "is_demo=perhaps", "size=0", "user_name=%00"):
        response = client.get(f"/api/v1/ib/client-trading-accounts?{bad}", headers=ivy_headers)
        assert response.status_code == 422, bad
    # `login` is no filter of this list: ignored, not read as one.
    assert account_ids(client, ivy_headers, "login=1") == account_ids(client, ivy_headers, "")


def test_client_accounts_show_live_figures_and_survive_an_outage(client, tree, book, sim):
    from crm_app.trading.services import gateway_for

    opened = open_demo(client, tree["headers"]["carol"], book)
    assert opened.status_code == 201, opened.get_json()
    account = db.session.get(TradingAccount, opened.get_json()["id"])
    gateway_for(account.server).balance_operation(account.login, Decimal("1500.00"), "DEP#ib-figures")

    path = "/api/v1/ib/client-trading-accounts"
    live = get(client, tree["headers"]["ivy"], path)["list"][0]
    assert (live["id"], live["balance"], live["equity"]) == (account.id, "1500.00", "1500.00")
    assert live["user_name"] == "Carol King" and live["trading_server_name"] == "Demo MT5"
    assert live["figures_read_at"] is not None

    sim.faults(error_rate=1)
    try:
        stale = client.get(path, headers=tree["headers"]["ivy"])
    finally:
        sim.faults(error_rate=0, latency_ms=0, lost_answer_rate=0)
    assert stale.status_code == 200
    row = stale.get_json()["list"][0]
    assert (row["balance"], row["figures_read_at"]) == ("1500.00", live["figures_read_at"])


def test_a_down_server_is_asked_once_per_page_and_never_makes_a_500(client, tree, accounts, monkeypatch):
    from crm_app.integrations.trading import gateway as gw
    from crm_app.integrations.trading.mt5_webapi import MT5WebAPIGateway

    calls = []

    def down(self, login):
        calls.append(login)
        raise gw.TransientError("connection refused")

    monkeypatch.setattr(MT5WebAPIGateway, "trade_state", down)
    answer = get(client, tree["headers"]["ivy"], "/api/v1/ib/client-trading-accounts")
    assert answer["total"] == 5
    # Four accounts on the demo server, one on the live one: one try per server.
    assert len(calls) == 2

    def broken(self, login):
        raise RuntimeError("connector bug")

    monkeypatch.setattr(MT5WebAPIGateway, "trade_state", broken)
    response = client.get("/api/v1/ib/client-trading-accounts", headers=tree["headers"]["ivy"])
    assert response.status_code == 200 and response.get_json()["total"] == 5
