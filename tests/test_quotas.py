"""Quotas per user (issue 11, item 5): uploads per hour and bytes per day (429 with
`Retry-After`), demo accounts open at once and live applications waiting for review (422),
each exact when requests arrive together; and a trading server whose free logins run low is
flagged to admins and audit-logged once."""

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.uploads.models import Upload
from tests.support.trading import apply_live, open_demo, pending_application_id
from tests.test_uploads import Api, png_of_size

ERROR_KEYS = {"code", "status", "message", "errors"}


def assert_error(response, status, code, field):
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) == ERROR_KEYS and body["code"] == code, body
    assert field in body["errors"], body
    return body


def run_at_once(count, request):
    """`count` requests started together, each from a client of its own (browsers in parallel)."""
    barrier = threading.Barrier(count)
    answers = []

    def run(index):
        barrier.wait()
        answers.append(request(index))

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.fixture
def api(client):
    return Api(client)


@pytest.fixture
def owner(factory):
    return factory.user()


@pytest.fixture
def owner_headers(client, factory, owner):
    return factory.headers(client, owner)


def upload_count(owner_id):
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(Upload.owner_id == owner_id)).scalar()


def age_uploads(owner_id, by):
    with db.engine.begin() as conn:
        conn.execute(sa.update(Upload).where(Upload.owner_id == owner_id).values(created_at=Upload.created_at - by))


# Uploads ------------------------------------------------------------------------------------


def test_uploads_per_hour_are_capped_with_retry_after(app, api, ctx, owner, owner_headers, factory, monkeypatch):
    monkeypatch.setitem(app.config, "UPLOAD_MAX_PER_HOUR", 3)
    for _ in range(3):
        assert api.upload(png_of_size(200), "a.png", owner_headers).status_code == 201
    refused = api.upload(png_of_size(200), "a.png", owner_headers)
    assert_error(refused, 429, "upload_limit", "file")
    assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
    assert upload_count(owner.id) == 3

    # Another user has a quota of their own.
    other = factory.headers(api.client, factory.user())
    assert api.upload(png_of_size(200), "a.png", other).status_code == 201

    # An hour later the oldest uploads have left the window.
    age_uploads(owner.id, timedelta(minutes=61))
    assert api.upload(png_of_size(200), "a.png", owner_headers).status_code == 201


def test_upload_bytes_per_day_are_capped_with_retry_after(app, api, ctx, owner, owner_headers, monkeypatch):
    monkeypatch.setitem(app.config, "UPLOAD_MAX_BYTES_PER_DAY", 10_000)
    assert api.upload(png_of_size(6_000), "a.png", owner_headers).status_code == 201
    age_uploads(owner.id, timedelta(hours=5))
    assert api.upload(png_of_size(3_000), "b.png", owner_headers).status_code == 201

    refused = api.upload(png_of_size(2_000), "c.png", owner_headers)
    assert_error(refused, 429, "upload_bytes_limit", "file")
    # The first (6,000 bytes, five hours old) must leave the 24-hour window: about 19 hours.
    assert 19 * 3600 - 60 <= int(refused.headers["Retry-After"]) <= 19 * 3600
    assert upload_count(owner.id) == 2
    # What still fits is accepted.
    assert api.upload(png_of_size(1_000), "d.png", owner_headers).status_code == 201


def test_uploads_at_once_cannot_pass_the_hourly_cap_together(app, api, ctx, owner, owner_headers, monkeypatch):
    """Each upload is held up between its check and its commit: without the lock all would pass."""
    monkeypatch.setitem(app.config, "UPLOAD_MAX_PER_HOUR", 2)
    storage = app.extensions["crm_runtime"].storage
    real_save = storage.save

    def slow_save(key, stream):
        time.sleep(0.2)
        return real_save(key, stream)

    monkeypatch.setattr(storage, "save", slow_save)
    answers = run_at_once(5, lambda i: Api(app.test_client()).upload(png_of_size(200), f"{i}.png", owner_headers))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201, 201, 429, 429, 429], statuses
    assert upload_count(owner.id) == 2


# Demo accounts and live applications ---------------------------------------------------------


def test_demo_accounts_open_at_once_are_capped(client, factory, book, app, monkeypatch):
    headers = factory.headers(client, factory.user())
    for _ in range(3):
        assert open_demo(client, headers, book).status_code == 201
    refused = open_demo(client, headers, book)
    assert_error(refused, 422, "demo_account_limit", "trading_account_type_id")
    listed = client.get("/api/v1/client/trading-accounts?is_demo=true", headers=headers).get_json()
    assert listed["total"] == 3

    # The limit is the broker's to set; other clients are not affected.
    monkeypatch.setitem(app.config, "DEMO_ACCOUNTS_MAX_OPEN", 4)
    assert open_demo(client, headers, book).status_code == 201
    assert open_demo(client, factory.headers(client, factory.user()), book).status_code == 201


def test_demo_accounts_requested_at_once_cannot_pass_the_cap_together(client, factory, book, app, monkeypatch):
    """Five requests together for a client with one place left: exactly one account is opened."""
    from crm_app.trading import services as trading_services
    from crm_app.trading.models import AccountApplication, TradingAccount

    user = factory.user()
    headers = factory.headers(client, user)
    monkeypatch.setitem(app.config, "DEMO_ACCOUNTS_MAX_OPEN", 2)
    assert open_demo(client, headers, book).status_code == 201

    real_audit = trading_services.record_audit_log

    def slow_audit(*args, **kwargs):
        time.sleep(0.2)  # between the quota check and the commit
        return real_audit(*args, **kwargs)

    monkeypatch.setattr(trading_services, "record_audit_log", slow_audit)
    answers = run_at_once(5, lambda i: open_demo(app.test_client(), headers, book))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201, 422, 422, 422, 422], [answer.get_json() for answer in answers]
    assert {a.get_json()["code"] for a in answers if a.status_code == 422} == {"demo_account_limit"}
    db.session.expire_all()
    count = sa.select(sa.func.count())
    assert db.session.scalar(count.where(TradingAccount.user_id == user.id, TradingAccount.is_demo)) == 2
    assert db.session.scalar(count.where(AccountApplication.user_id == user.id)) == 2


def test_a_demo_opening_left_behind_by_a_failed_request_stops_counting(client, factory, book, app, monkeypatch):
    from crm_app.trading.models import AccountApplication

    user = factory.user()
    headers = factory.headers(client, user)
    monkeypatch.setitem(app.config, "DEMO_ACCOUNTS_MAX_OPEN", 1)

    def server_down(*args, **kwargs):
        raise ConnectionError("down")

    with monkeypatch.context() as patch:
        patch.setattr("crm_app.trading.services.gateway_for", server_down)
        with pytest.raises(ConnectionError):
            open_demo(client, headers, book)
    # Just now it may still be opening: it counts.
    assert_error(open_demo(client, headers, book), 422, "demo_account_limit", "trading_account_type_id")
    with db.engine.begin() as conn:
        conn.execute(sa.update(AccountApplication).values(created_at=utcnow() - timedelta(minutes=10)))
    assert open_demo(client, headers, book).status_code == 201


def test_live_applications_pending_at_once_are_capped(client, factory, book, kyc_approved):
    headers = factory.headers(client, factory.user())
    assert apply_live(client, headers, book).status_code == 201
    refused = apply_live(client, headers, book)
    assert_error(refused, 422, "application_limit", "trading_account_type_id")
    queue = client.get("/api/v1/admin/audits?type=account_application", headers=book["admin_headers"]).get_json()
    assert queue["total"] == 1

    # Once the application is decided, the client may apply again.
    item_id = pending_application_id(client, book)
    rejected = client.post(
        f"/api/v1/admin/audits/{item_id}/reject", headers=book["admin_headers"], json={"remark": "incomplete"}
    )
    assert rejected.status_code == 200, rejected.get_json()
    assert apply_live(client, headers, book).status_code == 201


def test_live_applications_sent_at_once_leave_one_pending(client, factory, book, kyc_approved, app, monkeypatch):
    from crm_app.trading import services as trading_services

    headers = factory.headers(client, factory.user())
    real_audit = trading_services.record_audit_log

    def slow_audit(*args, **kwargs):
        time.sleep(0.2)
        return real_audit(*args, **kwargs)

    monkeypatch.setattr(trading_services, "record_audit_log", slow_audit)
    answers = run_at_once(4, lambda i: apply_live(app.test_client(), headers, book))
    assert sorted(answer.status_code for answer in answers) == [201, 422, 422, 422]
    queue = client.get("/api/v1/admin/audits?type=account_application", headers=book["admin_headers"]).get_json()
    assert queue["total"] == 1


# Login ranges ----------------------------------------------------------------------------------


def server_view(client, book):
    server_id = book["demo_server"]["id"]
    return client.get(f"/api/v1/admin/trading-servers/{server_id}", headers=book["admin_headers"]).get_json()


def low_range_entries(client, book):
    answer = client.get(
        "/api/v1/admin/audit-logs?action=trading_server.login_range_low", headers=book["admin_headers"]
    ).get_json()
    return answer["list"]


def test_a_server_running_out_of_logins_is_flagged_to_admins_and_logged_once(client, factory, book, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_RANGE_WARN_RATIO", 0.5)
    server = book["demo_server"]
    narrowed = client.put(
        f"/api/v1/admin/trading-servers/{server['id']}",
        headers=book["admin_headers"],
        json={"last_login": server["next_login"] + 3},  # four logins
    )
    assert narrowed.status_code == 200, narrowed.get_json()
    assert narrowed.get_json()["free_logins"] == 4 and narrowed.get_json()["login_range_low"] is False

    first, second = (factory.headers(client, factory.user()) for _ in range(2))
    for _ in range(2):
        assert open_demo(client, first, book).status_code == 201
    view = server_view(client, book)
    assert view["free_logins"] == 2 and view["login_range_low"] is False
    assert low_range_entries(client, book) == []

    assert open_demo(client, second, book).status_code == 201  # one left: below half
    view = server_view(client, book)
    assert view["free_logins"] == 1 and view["login_range_low"] is True
    [entry] = low_range_entries(client, book)
    assert entry["target_type"] == "trading_server" and entry["target_id"] == str(server["id"])
    assert entry["details"]["free_logins"] == 1 and entry["details"]["total_logins"] == 4

    assert open_demo(client, second, book).status_code == 201  # the last one: logged once only
    assert len(low_range_entries(client, book)) == 1
    assert server_view(client, book)["free_logins"] == 0
