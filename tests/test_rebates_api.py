"""The IB's payout account (IB and admin routes) and on-demand rebate runs through the queue.

Rebates are paid to the account the IB chose: one of its own live, active trading
accounts. Anything else is refused: another user's account as if it did not exist (404),
its own demo or inactive account as not eligible (422). An admin's run answers at once
with a run to follow; the RQ worker does it.
"""

import itertools

import pytest
from sqlalchemy import select, update

from crm_app.admin.models import AuditLog
from crm_app.extensions import db
from crm_app.rebates import services as rebates
from crm_app.rebates.models import RebateRun
from crm_app.trading.models import AccountType, TradingAccount, TradingServer

logins = itertools.count(8_300_000)
PAYOUT = "/api/v1/ib/rebate-payout-account"


@pytest.fixture
def people(ctx, client, factory):
    admin = factory.admin()
    ivy = factory.ib(first_name="Ivy")
    otto = factory.ib(first_name="Otto")
    carol = factory.user(parent=ivy, first_name="Carol")
    server = TradingServer(
        name="Live MT5",
        platform="MT5",
        base_url="http://127.0.0.1:1",
        manager_login=1000,
        manager_password_encrypted="x",
        next_login=8_300_000,
        last_login=8_399_999,
    )
    db.session.add(server)
    db.session.flush()
    account_type = AccountType(name="Live Standard", server_id=server.id, mt_group="real\\standard")
    db.session.add(account_type)
    db.session.commit()
    users = {"admin": admin, "ivy": ivy, "otto": otto, "carol": carol}
    return {
        "users": users,
        "headers": {name: factory.headers(client, user) for name, user in users.items()},
        "server": server,
        "type": account_type,
    }


def account(people, name, is_demo=False, status="active"):
    row = TradingAccount(
        user_id=people["users"][name].id,
        server_id=people["server"].id,
        account_type_id=people["type"].id,
        login=next(logins),
        leverage=100,
        is_demo=is_demo,
        status=status,
    )
    db.session.add(row)
    db.session.commit()
    return row


def choose(client, headers, account_id, path=PAYOUT):
    return client.put(path, headers=headers, json={"trading_account_id": account_id})


# Payout account --------------------------------------------------------------------------


def test_an_ib_sees_its_default_payout_account_and_chooses_another(client, people):
    ivy = people["headers"]["ivy"]
    assert client.get(PAYOUT, headers=ivy).get_json() == {
        "trading_account_id": None,
        "login": None,
        "currency": None,
        "server_name": None,
        "account_type_name": None,
        "source": "none",
        "updated_at": None,
    }
    first, second = account(people, "ivy"), account(people, "ivy")
    default = client.get(PAYOUT, headers=ivy).get_json()
    assert (default["trading_account_id"], default["source"], default["login"]) == (first.id, "default", first.login)

    chosen = choose(client, ivy, second.id)
    assert chosen.status_code == 200, chosen.get_json()
    body = chosen.get_json()
    assert (body["trading_account_id"], body["source"], body["server_name"]) == (second.id, "chosen", "Live MT5")
    assert body["updated_at"] and body["account_type_name"] == "Live Standard"
    assert client.get(PAYOUT, headers=ivy).get_json() == body
    assert rebates.payout_account(people["users"]["ivy"].id).id == second.id

    log = db.session.scalars(select(AuditLog).where(AuditLog.action == "rebate_payout_account.update")).one()
    assert (log.actor_id, log.target_id) == (people["users"]["ivy"].id, str(people["users"]["ivy"].id))
    assert log.details == {"trading_account_id": second.id, "login": second.login, "previous_trading_account_id": None}

    # The chosen account closed: settlements fall back to the first active live account.
    db.session.execute(update(TradingAccount).where(TradingAccount.id == second.id).values(status="disabled"))
    db.session.commit()
    fallback = client.get(PAYOUT, headers=ivy).get_json()
    assert (fallback["trading_account_id"], fallback["source"]) == (first.id, "default")


def test_an_ib_cannot_choose_anything_but_its_own_live_active_account(client, people):
    ivy = people["headers"]["ivy"]
    own = account(people, "ivy")
    assert choose(client, ivy, own.id).status_code == 200
    refused = {
        "another IB's": (account(people, "otto").id, 404, "not_found"),
        "its client's": (account(people, "carol").id, 404, "not_found"),
        "no such": (999_999, 404, "not_found"),
        "its own demo": (account(people, "ivy", is_demo=True).id, 422, "payout_account_not_eligible"),
        "its own disabled": (account(people, "ivy", status="disabled").id, 422, "payout_account_not_eligible"),
    }
    for what, (account_id, status, code) in refused.items():
        response = choose(client, ivy, account_id)
        assert response.status_code == status, what
        assert response.get_json()["code"] == code, what
    for body in ({}, {"trading_account_id": "x"}, {"trading_account_id": 0}, {"trading_account_id": 1, "ib_id": 2}):
        response = client.put(PAYOUT, headers=ivy, json=body)
        assert response.status_code == 422, body
        assert response.get_json()["code"] == "validation_error"
    # Nothing refused changed the choice.
    assert client.get(PAYOUT, headers=ivy).get_json()["trading_account_id"] == own.id

    assert client.get(PAYOUT, headers=people["headers"]["carol"]).status_code == 403
    assert (
        client.put(PAYOUT, headers=people["headers"]["admin"], json={"trading_account_id": own.id}).status_code == 403
    )
    assert client.get(PAYOUT).status_code == 401


def test_an_admin_chooses_for_an_ib_and_it_is_audit_logged(client, people):
    admin, users = people["headers"]["admin"], people["users"]
    path = f"/api/v1/admin/users/{users['otto'].id}/rebate-payout-account"
    first, second = account(people, "otto"), account(people, "otto")
    assert client.get(path, headers=admin).get_json()["trading_account_id"] == first.id
    chosen = choose(client, admin, second.id, path)
    assert chosen.status_code == 200, chosen.get_json()
    assert (chosen.get_json()["trading_account_id"], chosen.get_json()["source"]) == (second.id, "chosen")
    assert choose(client, admin, first.id, path).status_code == 200

    logs = db.session.scalars(
        select(AuditLog).where(AuditLog.action == "rebate_payout_account.update").order_by(AuditLog.id)
    ).all()
    assert [(log.actor_id, log.details["trading_account_id"]) for log in logs] == [
        (users["admin"].id, second.id),
        (users["admin"].id, first.id),
    ]
    assert logs[1].details["previous_trading_account_id"] == second.id and logs[1].ip

    # The same rules as for the IB itself; a user who is no IB has no payout account.
    assert choose(client, admin, account(people, "ivy").id, path).status_code == 404
    assert choose(client, admin, account(people, "otto", is_demo=True).id, path).status_code == 422
    carol_path = f"/api/v1/admin/users/{users['carol'].id}/rebate-payout-account"
    assert client.get(carol_path, headers=admin).status_code == 404
    assert client.get("/api/v1/admin/users/999999/rebate-payout-account", headers=admin).status_code == 404
    assert client.get(path, headers=people["headers"]["otto"]).status_code == 403


# On-demand runs --------------------------------------------------------------------------


def test_a_run_is_queued_followed_and_listed(client, people, run_jobs):
    admin = people["headers"]["admin"]
    started = client.post("/api/v1/admin/rebates/run", headers=admin, json={})
    assert started.status_code == 202, started.get_json()
    queued = started.get_json()
    assert (queued["status"], queued["settle"], queued["deals"], queued["started_at"]) == ("queued", False, 0, None)
    assert queued["requested_by_id"] == people["users"]["admin"].id
    path = f"/api/v1/admin/rebates/runs/{queued['id']}"
    assert client.get(path, headers=admin).get_json()["status"] == "queued"

    run_jobs()
    done = client.get(path, headers=admin).get_json()
    assert (done["status"], done["error"]) == ("finished", None)
    assert done["started_at"] and done["finished_at"]
    listed = client.get("/api/v1/admin/rebates/runs", headers=admin).get_json()
    assert listed["total"] == 1 and listed["list"][0]["id"] == queued["id"]
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.target_type == "rebate_runs")) == "rebates.run"

    # The job delivered again does nothing.
    from workers.rebates import run_rebates

    assert run_rebates(queued["id"]) is None
    assert client.get("/api/v1/admin/rebates/runs/999999", headers=admin).status_code == 404
    for name in ("ivy", "carol"):
        assert client.get(path, headers=people["headers"][name]).status_code == 403
        assert client.get("/api/v1/admin/rebates/runs", headers=people["headers"][name]).status_code == 403
    assert client.post("/api/v1/admin/rebates/run", headers=admin, json={"settle": "maybe"}).status_code == 422


def test_a_failing_run_says_why(client, people, run_jobs, monkeypatch):
    def broken(settle=False):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(rebates, "run", broken)
    started = client.post("/api/v1/admin/rebates/run", headers=people["headers"]["admin"], json={"settle": True})
    run_jobs()
    failed = client.get(
        f"/api/v1/admin/rebates/runs/{started.get_json()['id']}", headers=people["headers"]["admin"]
    ).get_json()
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: the database went away"


def test_a_run_whose_job_is_gone_is_failed(client, people):
    started = client.post("/api/v1/admin/rebates/run", headers=people["headers"]["admin"], json={})
    run_id = started.get_json()["id"]
    from rq.job import Job

    from crm_app.common.runtime import runtime

    Job.fetch(f"rebate-run-{run_id}", connection=runtime().redis).delete()
    db.session.execute(
        update(RebateRun)
        .where(RebateRun.id == run_id)
        .values(requested_at=RebateRun.requested_at - db.text("interval '5 minutes'"))
    )
    db.session.commit()
    answer = client.get(f"/api/v1/admin/rebates/runs/{run_id}", headers=people["headers"]["admin"]).get_json()
    assert answer["status"] == "failed" and "gone" in answer["error"]


def test_without_redis_the_run_is_done_in_the_request(app, client, people, monkeypatch):
    monkeypatch.setattr(app.extensions["crm_runtime"], "redis", None)
    started = client.post("/api/v1/admin/rebates/run", headers=people["headers"]["admin"], json={"settle": True})
    assert started.status_code == 202, started.get_json()
    answer = started.get_json()
    assert (answer["status"], answer["job_id"], answer["settle"]) == ("finished", None, True)
    assert (answer["deals"], answer["rebates"], answer["settlements"], answer["paid"]) == (0, 0, 0, 0)


def test_the_new_routes_are_documented_with_their_schemas(client):
    document = client.get("/api/v1/openapi.json").get_json()
    paths = document["paths"]
    payout = paths["/api/v1/ib/rebate-payout-account"]
    assert set(payout) >= {"get", "put"}
    put_body = payout["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert put_body.endswith("/PayoutAccountChoice")
    assert payout["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PayoutAccount")
    assert set(paths["/api/v1/admin/users/{user_id}/rebate-payout-account"]) >= {"get", "put"}
    run = paths["/api/v1/admin/rebates/run"]["post"]["responses"]
    assert run["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/RebateRun")
    assert "get" in paths["/api/v1/admin/rebates/runs/{run_id}"] and "get" in paths["/api/v1/admin/rebates/runs"]
    schemas = document["components"]["schemas"]
    assert {"trading_account_id", "source", "login"} <= set(schemas["PayoutAccount"]["properties"])
    assert {"id", "job_id", "status", "deals", "rebates", "settlements", "paid"} <= set(
        schemas["RebateRun"]["properties"]
    )
