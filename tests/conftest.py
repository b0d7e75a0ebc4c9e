"""Test harness: a PostgreSQL database of our own per run, our own Redis db number,
a real SMTP sink, and a real RQ worker for jobs.

TEST_DATABASE_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/test) is used
only to create and drop the run's database; TEST_REDIS_URL (default db 13) is
flushed before every test.
"""

import contextvars
import os
import time
import uuid

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

ADMIN_URL = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
OWNER_KEY = "crm:test-run-owner"

CHEAP_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, "ARGON2_PARALLELISM": 1}


def _psycopg_url(url):
    from crm_app.config import normalise_database_url

    return normalise_database_url(url)


@pytest.fixture(scope="session")
def database_url():
    name = f"crm_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_engine = sa.create_engine(_psycopg_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = _psycopg_url(ADMIN_URL).rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin_engine.dispose()


@pytest.fixture(scope="session")
def redis_url():
    """A Redis db number of our own: claimed with SET NX so parallel runs never flush each other."""
    import redis

    base = REDIS_BASE_URL.rstrip("/")
    if base.rsplit("/", 1)[-1].isdigit():
        yield base  # an explicit db number was given: trust the caller
        return
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    for number in range(15, 0, -1):
        connection = redis.Redis.from_url(f"{base}/{number}")
        if connection.set(OWNER_KEY, token, nx=True, ex=6 * 3600):
            yield f"{base}/{number}"
            connection.flushdb()
            return
    raise RuntimeError("no free Redis db number for this test run")


@pytest.fixture(scope="session")
def smtp_sink():
    from tests.support.smtp_sink import SmtpSink

    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def app(database_url, redis_url, smtp_sink, tmp_path_factory):
    from flask_migrate import upgrade

    from crm_app import create_app

    os.environ.pop("DATABASE_URL", None)
    application = create_app(
        {
            "APP_ENV": "test",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": smtp_sink.port,
            "MAIL_DEFAULT_SENDER": "no-reply@broker.test",
            "UPLOAD_FOLDER": str(tmp_path_factory.mktemp("uploads")),
            "UPLOAD_MAX_BYTES": 256 * 1024,
            "TESTING": True,
            **CHEAP_ARGON2,
        }
    )
    with application.app_context():
        # The schema comes from the migrations, exactly as in production.
        upgrade()
    return application


@pytest.fixture(autouse=True)
def clean_state(request):
    """Every test that uses the app starts from empty tables, an empty Redis db and
    an empty mailbox; tests of a lone module do not build the app at all."""
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    smtp_sink = request.getfixturevalue("smtp_sink")
    empty_database_and_redis(app)
    smtp_sink.messages.clear()
    yield


def empty_database_and_redis(app):
    """Empty every table and this run's Redis db (keeping the run's claim on it)."""
    from crm_app.common.runtime import runtime
    from crm_app.extensions import db

    with app.app_context():
        tables = [t.name for t in db.metadata.sorted_tables]
        db.session.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        db.session.commit()
        redis_client = runtime().redis
        owner = redis_client.get(OWNER_KEY)
        redis_client.flushdb()
        if owner is not None:
            redis_client.set(OWNER_KEY, owner, ex=6 * 3600)


class IsolatedClient(FlaskClient):
    """Each request runs in a context of its own, as in production.

    Tests often hold an app context open (the `factory` and `ctx` fixtures); a request
    made inside it would otherwise share the test's SQLAlchemy session and skip the
    per-request teardown, so a refused request's uncommitted changes could leak.
    """

    def open(self, *args, **kwargs):
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture
def client(app):
    app.test_client_class = IsolatedClient
    return app.test_client()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


@pytest.fixture
def run_jobs(app):
    """Run every queued job on a real RQ worker against real Redis, then return."""
    from workers import QUEUES, get_queue
    from workers.worker import BurstWorker

    def run():
        with app.app_context():
            queues = [get_queue(name) for name in QUEUES]
            worker = BurstWorker(queues, connection=queues[0].connection)
            worker.work(burst=True, with_scheduler=False)

    return run


@pytest.fixture
def factory(app):
    from tests.support.factory import Factory

    with app.app_context():
        yield Factory(app)


@pytest.fixture
def wait_for():
    def wait(predicate, timeout=5.0, interval=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError("condition not met in time")

    return wait


# Trading-server fixtures (the MT simulator over HTTP), for every test module that needs them.
from tests.support.trading import book, kyc_approved, sim  # noqa: E402, F401
