"""The authenticated read path: one pooled connection per GET, the caller as a light row
that loads its ORM user only when asked, the menus answer equal to its schema's dump,
and idle pooled connections checked before use."""

import pytest
import sqlalchemy as sa

from crm_app.auth.schemas import MenuListSchema
from crm_app.auth.services import Caller
from crm_app.common.reads import IdlePing
from crm_app.demo import seed_demo
from crm_app.extensions import db


def count_checkouts(app):
    counter = {"n": 0}

    def checkout(*args):
        counter["n"] += 1

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "checkout", checkout)
    return counter, lambda: sa.event.remove(engine, "checkout", checkout)


def test_menus_answer_is_what_the_schema_would_dump(ctx, client, factory):
    seed_demo()
    admin = factory.admin()
    response = client.get("/api/v1/menus", headers=factory.headers(client, admin))
    assert response.status_code == 200
    body = response.get_json()
    assert body["list"] and any(menu["children"] for menu in body["list"])
    assert MenuListSchema().dump(body) == body


def test_a_get_uses_one_pooled_connection_for_token_check_and_orm_reads(app, client, factory):
    admin = factory.admin()
    headers = factory.headers(client, admin)
    counter, stop = count_checkouts(app)
    try:
        for url in ("/api/v1/menus", "/api/v1/admin/users", "/api/v1/auth/permissions"):
            counter["n"] = 0
            response = client.get(url, headers=headers)
            assert response.status_code == 200, (url, response.get_json())
            assert counter["n"] == 1, (url, counter["n"])
    finally:
        stop()


def test_a_refused_write_by_the_caller_changes_nothing(app, client, factory):
    """A POST reads the token user inside the session's transaction and writes through
    the ORM user: a refused password change keeps the password, the token version and
    the token, and records only its audit row."""
    user = factory.user()
    headers = factory.headers(client, user)
    response = client.post(
        "/api/v1/auth/password",
        json={"old_password": "wrong-password-1", "new_password": "Another-Copper-12"},
        headers=headers,
    )
    assert response.status_code == 422 and response.get_json()["code"] == "wrong_old_password"
    assert client.get("/api/v1/menus", headers=headers).status_code == 200
    factory.login(client, user.email)  # the old password still signs in
    with app.app_context():
        from crm_app.admin.models import AuditLog
        from crm_app.auth.models import User

        assert db.session.get(User, user.id).token_version == 0
        actions = db.session.scalars(sa.select(AuditLog.action).where(AuditLog.actor_id == user.id)).all()
        assert "auth.password_change_failed" in actions and "auth.password_change" not in actions


def test_caller_loads_the_orm_user_only_when_asked(app, factory):
    with app.app_context():
        user = factory.user(first_name="Ada")
        caller = Caller(user.id, user.user_type, user.status, user.token_version)
        assert caller.user_type == "client" and caller._user is None
        assert caller.first_name == "Ada"  # loads the ORM user
        assert caller._user is not None
        caller.first_name = "Grace"  # written through to the ORM user
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(type(caller._user), user.id).first_name == "Grace"
        assert caller == caller._user and hash(caller) == hash(Caller(user.id, "client", "enabled", 0))


def test_an_idle_connection_that_died_is_replaced_at_checkout(app):
    with app.app_context():
        engine = sa.create_engine(db.engine.url, pool_size=1, max_overflow=0)
    try:
        IdlePing(engine, idle_seconds=0.0001)
        with engine.connect() as conn:
            first_pid = conn.execute(sa.text("select pg_backend_pid()")).scalar()
        # The database drops the pooled connection behind the pool's back (a restart would).
        with app.app_context():
            with db.engine.connect() as admin_conn:
                admin_conn.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": first_pid})
                admin_conn.commit()
        with engine.connect() as conn:
            second_pid = conn.execute(sa.text("select pg_backend_pid()")).scalar()
        assert second_pid != first_pid
    finally:
        engine.dispose()


def kill_pooled_connections(app):
    """What a database restart does to the connections waiting in the app's pool."""
    with app.app_context():
        outsider = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
    try:
        with outsider.connect() as conn:
            killed = conn.execute(
                sa.text(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = current_database() and pid <> pg_backend_pid() and state = 'idle'"
                )
            ).all()
            conn.commit()
    finally:
        outsider.dispose()
    assert killed, "the app's pool held an idle connection"


@pytest.fixture
def no_idle_ping(app):
    ping = app.extensions["crm_idle_ping"]
    saved, ping.idle_seconds = ping.idle_seconds, float("inf")
    yield
    ping.idle_seconds = saved


def test_a_connection_dropped_by_the_database_costs_no_failed_request(app, client, factory, no_idle_ping, caplog):
    """A restart drops pooled connections in steady use (not idle long enough to be
    pinged): the request's first statement finds the connection dead and runs again
    on a new one, for reads and writes alike."""
    user = factory.user()
    headers = factory.headers(client, user)
    assert client.get("/api/v1/menus", headers=headers).status_code == 200
    # Several connections wait in the pool, as on a busy server.
    with app.app_context():
        held = [db.engine.connect() for _ in range(3)]
        for connection in held:
            connection.close()

    kill_pooled_connections(app)
    assert client.get("/api/v1/menus", headers=headers).status_code == 200
    assert client.get("/api/v1/auth/permissions", headers=headers).status_code == 200

    kill_pooled_connections(app)
    response = client.post("/api/v1/auth/logout", headers=headers)
    assert response.status_code in (200, 204), response.get_json()
    assert client.get("/api/v1/menus", headers=headers).status_code == 401
    assert caplog.text.count("retrying on a new one") >= 2
