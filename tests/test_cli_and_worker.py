"""`flask create-admin`, `flask seed-demo`, and the RQ worker as the Procfile runs it."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from rq import Queue, Retry
from rq.job import Job, JobStatus

from crm_app.config import PROJECT_ROOT
from tests.conftest import CHEAP_ARGON2
from workers import job as declare_job

FLASK = str(Path(sys.executable).with_name("flask"))
STRONG = "Saffron-Kettle-44"


def invoke(app, *args):
    """Run a command as `flask` would: FlaskGroup pushes an app context first (see
    test_cli_commands_push_their_own_app_context for the runner without one)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def login(client, email, password):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def base_env(tmp_path, **values):
    """The environment of a Procfile process: nothing inherited that names a service."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "MAIL_", "REDIS_", "DATABASE_"))}
    for name in ("SECRET_KEY", "JWT_SECRET_KEY", "APP_ENV", "CAPTCHA_ENABLED"):
        env.pop(name, None)
    env.update(
        {
            "APP_ENV": "test",
            "UPLOAD_FOLDER": str(tmp_path / "uploads"),
            "PYTHONUNBUFFERED": "1",
            **{k: str(v) for k, v in values.items()},
        }
    )
    return env


@pytest.mark.parametrize("args", [["seed-demo"], ["create-admin", "--email", "ctx@example.test", "--password", STRONG]])
def test_cli_commands_push_their_own_app_context(app, args):
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, repr(result.exception)


# create-admin -----------------------------------------------------------------------


def test_create_admin_creates_an_admin_who_can_log_in(app, client):
    result = invoke(app, "create-admin", "--email", "Boss@Example.test", "--password", STRONG)
    assert result.exit_code == 0, result.output
    assert "Boss@Example.test" in result.output
    response = login(client, "boss@example.test", STRONG)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["user_info"]["user_type"] == "admin"
    headers = {"Authorization": f"Bearer {response.get_json()['token']}"}
    assert client.get("/api/v1/admin/users", headers=headers).status_code == 200


def test_create_admin_takes_first_and_last_name(app, client, ctx):
    from crm_app.auth.services import find_user_by_email

    args = ["--email", "named@example.test", "--password", STRONG, "--first-name", "Ada", "--last-name", "Lovelace"]
    result = invoke(app, "create-admin", *args)
    assert result.exit_code == 0, result.output
    user = find_user_by_email("named@example.test")
    assert (user.first_name, user.last_name, user.user_type) == ("Ada", "Lovelace", "admin")


def test_create_admin_is_recorded_in_the_audit_log(app, ctx):
    from crm_app.admin.models import AuditLog
    from crm_app.extensions import db

    assert invoke(app, "create-admin", "--email", "audited@example.test", "--password", STRONG).exit_code == 0
    actions = db.session.scalars(sa.select(AuditLog.action)).all()
    assert "user.create" in actions


@pytest.mark.parametrize("second_email", ["boss@example.test", "BOSS@EXAMPLE.TEST", " boss@example.test "])
def test_create_admin_with_a_taken_email_fails_clearly(app, ctx, second_email):
    from crm_app.auth.models import User
    from crm_app.extensions import db

    assert invoke(app, "create-admin", "--email", "boss@example.test", "--password", STRONG).exit_code == 0
    result = invoke(app, "create-admin", "--email", second_email, "--password", STRONG)
    assert result.exit_code != 0
    assert "already registered" in result.output, result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


@pytest.mark.parametrize(
    "password, rule",
    [
        ("short1", "password_too_short"),
        ("", "password_too_short"),
        ("qwertyuiop", "password_common"),
        ("12345678901", "password_guessable"),
        ("a1" * 100, "password_too_long"),
    ],
)
def test_create_admin_with_a_weak_password_fails_clearly(app, ctx, password, rule):
    from crm_app.auth.models import User
    from crm_app.extensions import db

    result = invoke(app, "create-admin", "--email", "weak@example.test", "--password", password)
    assert result.exit_code != 0
    assert rule in result.output, result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_create_admin_without_required_options_is_a_usage_error(app):
    result = invoke(app, "create-admin", "--email", "nopass@example.test")
    assert result.exit_code == 2
    assert "--password" in result.output


@pytest.mark.parametrize("email", ["not-an-email", "", "   "])
def test_create_admin_with_an_invalid_email_fails_clearly(app, ctx, email):
    from crm_app.auth.models import User
    from crm_app.extensions import db

    result = invoke(app, "create-admin", "--email", email, "--password", STRONG)
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_real_flask_command_creates_an_admin_from_the_project_root(app, client, database_url, tmp_path):
    """The `flask` command finds the app with no FLASK_APP and pushes its context."""
    env = base_env(tmp_path, DATABASE_URL=database_url, **CHEAP_ARGON2)
    result = subprocess.run(
        [FLASK, "create-admin", "--email", "shell@example.test", "--password", STRONG],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert login(client, "shell@example.test", STRONG).status_code == 200

    again = subprocess.run(
        [FLASK, "create-admin", "--email", "shell@example.test", "--password", STRONG],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode != 0
    assert "already registered" in again.stdout + again.stderr
    assert "Traceback" not in again.stderr


# seed-demo --------------------------------------------------------------------------


def demo_counts():
    from crm_app.auth.models import User
    from crm_app.broker.models import BrokerSetting, Currency, Menu, PermissionAction
    from crm_app.extensions import db

    db.session.expire_all()
    return {
        model.__name__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
        for model in (User, Menu, PermissionAction, Currency, BrokerSetting)
    }


def test_seed_demo_is_idempotent(app, ctx):
    first = invoke(app, "seed-demo")
    assert first.exit_code == 0, first.output
    counts = demo_counts()
    assert all(counts.values()), counts
    second = invoke(app, "seed-demo")
    assert second.exit_code == 0, second.output
    assert demo_counts() == counts
    # The same demo users, with the same referral code, every time.
    assert second.output == first.output


def test_seed_demo_prints_demo_logins_that_work(app, client):
    from crm_app.demo import DEMO_ADMIN, DEMO_CLIENT, DEMO_IB, DEMO_PASSWORD

    result = invoke(app, "seed-demo")
    assert result.exit_code == 0, result.output
    logins = [DEMO_ADMIN, (DEMO_IB, DEMO_PASSWORD), (DEMO_CLIENT, DEMO_PASSWORD)]
    for (email, password), user_type in zip(logins, ("admin", "ib", "client"), strict=True):
        assert re.search(rf"{re.escape(email)}\s*/\s*{re.escape(password)}", result.output), result.output
        response = login(client, email, password)
        assert response.status_code == 200, (email, response.get_json())
        assert response.get_json()["user_info"]["user_type"] == user_type


def test_seed_demo_gives_each_portal_its_menus_and_actions(app, client):
    from crm_app.demo import DEMO_ADMIN, DEMO_CLIENT, DEMO_IB, DEMO_PASSWORD

    assert invoke(app, "seed-demo").exit_code == 0
    for email, password in (DEMO_ADMIN, (DEMO_IB, DEMO_PASSWORD), (DEMO_CLIENT, DEMO_PASSWORD)):
        token = login(client, email, password).get_json()["token"]
        body = client.get("/api/v1/auth/permissions", headers={"Authorization": f"Bearer {token}"}).get_json()
        assert body["menus"] and body["actions"], (email, body)


def test_seed_demo_client_sits_under_the_demo_ib(app, ctx):
    from crm_app.auth.services import find_user_by_email
    from crm_app.demo import DEMO_CLIENT, DEMO_IB

    assert invoke(app, "seed-demo").exit_code == 0
    ib = find_user_by_email(DEMO_IB)
    assert ib.referral_code
    assert find_user_by_email(DEMO_CLIENT).parent_ib_id == ib.id


def test_seed_demo_keeps_what_an_admin_changed(app, ctx, client):
    """Running it again (as bin/demo does on every start) does not undo admin edits."""
    from crm_app.broker.services import get_setting, update_setting

    assert invoke(app, "seed-demo").exit_code == 0
    update_setting("broker", {"support_phone": "+1 555 0100"}, actor=None, client=None)
    assert invoke(app, "seed-demo").exit_code == 0
    assert get_setting("broker")["support_phone"] == "+1 555 0100"
    assert client.get("/api/v1/config/broker").get_json()["support_phone"] == "+1 555 0100"


# The worker -------------------------------------------------------------------------


def rq_job_descriptions(connection):
    descriptions = {}
    for key in connection.scan_iter(match="rq:job:*"):
        if connection.type(key) == b"hash":
            descriptions[key.decode()] = (connection.hget(key, "description") or b"").decode()
    return descriptions


def ask_for_register_code(client, email):
    response = client.post(
        "/api/v1/auth/email-code", json={"email": email, "scene": "register", "received_at": int(time.time())}
    )
    assert response.status_code == 200, response.get_json()


def code_in(text):
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)


def test_real_worker_delivers_an_email_code_the_web_app_enqueued(
    app, client, database_url, smtp_sink, wait_for, tmp_path
):
    email = "worker@example.test"
    ask_for_register_code(client, email)
    assert smtp_sink.texts_to(email) == []  # queued, not sent by the web process

    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    descriptions = rq_job_descriptions(connection)
    assert list(descriptions.values()) == ["send_email_code(scene=register)"], descriptions

    env = base_env(
        tmp_path,
        DATABASE_URL=database_url,
        REDIS_URL=app.config["REDIS_URL"],
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_sink.port,
        MAIL_DEFAULT_SENDER="no-reply@broker.test",
    )
    result = subprocess.run(
        [sys.executable, "-m", "workers.worker", "--burst"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log

    texts = wait_for(lambda: smtp_sink.texts_to(email))
    code = code_in(texts[-1])
    message = next(m["message"] for m in smtp_sink.messages if email in m["to"])
    assert message["Subject"] == "Your verification code"
    assert "no-reply@broker.test" in message["From"]

    # The code travels only in the mail: not in the job's description, not in the log.
    for description in descriptions.values():
        assert code not in description
    assert code not in log, log
    for description in rq_job_descriptions(connection).values():
        assert code not in description
    # The worker's lines about the job (RQ's and the job's own) name it.
    (job_key,) = descriptions
    job_id = job_key.removeprefix("rq:job:")
    assert f"[job {job_id}]" in log, log
    # Nothing left behind on the queues, nothing failed.
    assert connection.llen("rq:queue:default") == 0
    assert connection.zcard("rq:failed:default") == 0

    # And the code delivered by the worker works.
    response = client.post(
        "/api/v1/auth/register", json={"email": email, "password": "Quartz-Lantern-58", "email_code": code}
    )
    assert response.status_code == 201, response.get_json()


def test_worker_refuses_to_start_without_redis(database_url, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "workers.worker", "--burst"],
        cwd=PROJECT_ROOT,
        env=base_env(tmp_path, DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr


def test_without_redis_the_job_runs_in_process(app, database_url, smtp_sink, tmp_path):
    from crm_app import create_app
    from crm_app.extensions import db

    local = create_app(
        {
            "APP_ENV": "test",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": None,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": smtp_sink.port,
            "MAIL_DEFAULT_SENDER": "no-reply@broker.test",
            "UPLOAD_FOLDER": str(tmp_path / "uploads"),
            "TESTING": True,
            **CHEAP_ARGON2,
        }
    )
    try:
        email = "inprocess@example.test"
        ask_for_register_code(local.test_client(), email)
        # Delivered before the answer came back: no queue, no worker.
        texts = smtp_sink.texts_to(email)
        assert len(texts) == 1
        code = code_in(texts[0])
        connection = redis.Redis.from_url(app.config["REDIS_URL"])
        assert rq_job_descriptions(connection) == {}
        response = local.test_client().post(
            "/api/v1/auth/register", json={"email": email, "password": "Quartz-Lantern-58", "email_code": code}
        )
        assert response.status_code == 201, response.get_json()
    finally:
        with local.app_context():
            db.engine.dispose()


def test_without_redis_a_failing_job_does_not_fail_the_request(app, database_url, tmp_path):
    """Mail server down and no queue: the code is still issued (the client may ask again)."""
    from crm_app import create_app
    from crm_app.extensions import db
    from tests.support.smtp_sink import free_port

    local = create_app(
        {
            "APP_ENV": "test",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": None,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": free_port(),
            "MAIL_TIMEOUT_SECONDS": 2,
            "UPLOAD_FOLDER": str(tmp_path / "uploads"),
            "TESTING": True,
            **CHEAP_ARGON2,
        }
    )
    try:
        ask_for_register_code(local.test_client(), "nomail@example.test")
    finally:
        with local.app_context():
            db.engine.dispose()


# Jobs: declared options on every enqueue path, the job id in the log, the hard limit -------------


@declare_job(queue="default", timeout=7, result_ttl=11, failure_ttl=13, retry=Retry(max=1))
def fails_once_then_logs(marker_key):
    """A test job: fails on its first run, logs and succeeds on its retry."""
    import logging

    from crm_app.common.runtime import runtime

    if runtime().redis.incr(marker_key) == 1:
        raise RuntimeError("first run fails")
    logging.getLogger("tests.jobs").info("retried run done")
    return "ok"


def ignores_the_alarm(seconds):
    """A test job that ignores RQ's SIGALRM (as a C call that never returns would)."""
    import signal

    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(seconds)
    return "should never get here"


def declared(job_func):
    options = job_func.job_options
    return options["job_timeout"], options["result_ttl"], options["failure_ttl"]


def test_clock_registers_every_periodic_job_with_its_declared_queue_timeout_and_ttls(app):
    """Before: expire_deposit_drafts and remove_expired_export_files ran under RQ's 180 s default
    and no scheduled job carried its TTLs."""
    from rq.cron import CronScheduler

    from workers.clock import register_periodic_jobs
    from workers.exports import remove_expired_export_files
    from workers.money import expire_deposit_drafts

    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    scheduler = CronScheduler(connection=connection)
    register_periodic_jobs(scheduler)
    cron_jobs = scheduler.get_jobs()
    assert len(cron_jobs) == 6
    for cron_job in cron_jobs:
        func = cron_job.func
        assert cron_job.queue_name == func.queue_name
        options = cron_job.job_options
        assert (options["job_timeout"], options["result_ttl"], options["failure_ttl"]) == declared(func), func.__name__
        # What the clock puts on the queue carries the same options.
        enqueued = cron_job.enqueue(connection)
        assert (enqueued.timeout, enqueued.result_ttl, enqueued.failure_ttl) == declared(func), func.__name__
    by_name = {cron_job.func.__name__: cron_job for cron_job in cron_jobs}
    assert by_name[expire_deposit_drafts.__name__].job_options["job_timeout"] == 300
    assert by_name[remove_expired_export_files.__name__].job_options["job_timeout"] == 900


def test_a_job_a_route_enqueues_carries_its_declared_options(app, client):
    from workers.mail import send_email_code

    ask_for_register_code(client, "opts@example.test")
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    (job_id,) = Queue(send_email_code.queue_name, connection=connection).job_ids
    rq_job = Job.fetch(job_id, connection=connection)
    assert (rq_job.timeout, rq_job.result_ttl, rq_job.failure_ttl) == declared(send_email_code)
    assert rq_job.retries_left == send_email_code.job_options["retry"].max


def test_a_retried_job_keeps_its_declared_options_and_logs_with_its_id(app, ctx, run_jobs, caplog):
    from workers import enqueue

    rq_job = enqueue(fails_once_then_logs, "test:retry-marker")
    with caplog.at_level("INFO", logger="tests.jobs"):
        run_jobs()
    rq_job.refresh()
    assert rq_job.get_status() == JobStatus.FINISHED
    assert (rq_job.timeout, rq_job.result_ttl, rq_job.failure_ttl) == (7, 11, 13)
    (record,) = [r for r in caplog.records if r.name == "tests.jobs"]
    assert record.running_job_id == rq_job.id
    # Outside a job the field is there too, so one format serves every line.
    import logging

    outside = logging.getLogger("tests.jobs").makeRecord("tests.jobs", logging.INFO, __file__, 1, "x", (), None)
    assert outside.running_job_id == "-"


def test_the_worker_parent_kills_a_job_that_ignores_its_timeout(app):
    """RQ's alarm is raised inside the job; a job that ignores it would hold the worker for ever.
    The parent kills the work horse once the declared timeout plus a grace has passed."""
    from workers.worker import build_worker

    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    queue = Queue("default", connection=connection)
    rq_job = queue.enqueue(ignores_the_alarm, 60, job_timeout=1)
    worker = build_worker(connection, queue_names=["default"], job_monitoring_interval=1)
    worker.hard_limit_grace_seconds = 1
    started = time.monotonic()
    worker.work(burst=True, with_scheduler=False)
    elapsed = time.monotonic() - started
    rq_job.refresh()
    assert rq_job.get_status() == JobStatus.FAILED
    assert elapsed < 15, elapsed


def test_worker_shutdown_does_not_wait_for_the_command_threads_read(app):
    """redis-py 8's PubSubWorkerThread.stop() waits out a 60 s read; our worker's is bounded."""
    from workers.worker import build_worker

    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    worker = build_worker(connection, queue_names=["default"])
    worker.subscribe()
    time.sleep(0.2)  # let the thread enter its read
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < worker.pubsub_stop_seconds + 1
