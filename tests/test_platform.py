"""The platform under every route: configuration from the environment, health probes,
the one error shape, junk input, and the migrations against real databases."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_app.config import PROJECT_ROOT, ConfigError, load_config
from tests.conftest import ADMIN_URL, CHEAP_ARGON2

ERROR_KEYS = {"code", "status", "message", "errors"}
SECRET_NAMES = ("SECRET_KEY", "JWT_SECRET_KEY")
FLASK = str(Path(sys.executable).with_name("flask"))


@pytest.fixture
def clean_env(monkeypatch):
    """No setting leaks into these tests from the shell that runs them."""
    for name in ("APP_ENV", "DATABASE_URL", "REDIS_URL", *SECRET_NAMES):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def assert_error_shape(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ERROR_KEYS, body
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], dict)
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture
def served_500s(app, monkeypatch):
    """Answer unhandled exceptions with the 500 a production client would get,
    instead of raising them into the test."""
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)


# Configuration ------------------------------------------------------------------


def test_production_refuses_to_start_without_secrets(clean_env):
    clean_env.setenv("APP_ENV", "production")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config()


def test_production_refuses_to_start_with_only_one_secret(clean_env):
    clean_env.setenv("APP_ENV", "production")
    clean_env.setenv("SECRET_KEY", "s" * 32)
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        load_config()


def test_unset_app_env_means_production_and_refuses_to_start_without_secrets(clean_env):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config()


def test_create_app_itself_refuses_to_start_in_production_without_secrets(clean_env):
    from crm_app import create_app

    clean_env.setenv("APP_ENV", "production")
    with pytest.raises(ConfigError):
        create_app()


def test_production_starts_with_both_secrets_and_keeps_them(clean_env):
    clean_env.setenv("APP_ENV", "production")
    clean_env.setenv("SECRET_KEY", "secret-" + "x" * 32)
    clean_env.setenv("JWT_SECRET_KEY", "jwt-" + "y" * 32)
    cfg = load_config()
    assert cfg["SECRET_KEY"] == "secret-" + "x" * 32
    assert cfg["JWT_SECRET_KEY"] == "jwt-" + "y" * 32


def test_development_starts_without_secrets(clean_env):
    clean_env.setenv("APP_ENV", "development")
    cfg = load_config()
    assert cfg["APP_ENV"] == "development"
    for name in SECRET_NAMES:
        assert cfg[name], name
        assert "insecure" in cfg[name]


def test_empty_secret_counts_as_missing_in_production(clean_env):
    clean_env.setenv("APP_ENV", "production")
    clean_env.setenv("SECRET_KEY", "")
    clean_env.setenv("JWT_SECRET_KEY", "")
    with pytest.raises(ConfigError):
        load_config()


def test_unknown_app_env_is_refused(clean_env):
    clean_env.setenv("APP_ENV", "staging-typo")
    with pytest.raises(ConfigError, match="APP_ENV"):
        load_config()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://user@host:5432/name", "postgresql+psycopg://user@host:5432/name"),
        (
            "postgres://user:p%40ss@host:5432/name?sslmode=require",
            "postgresql+psycopg://user:p%40ss@host:5432/name?sslmode=require",
        ),
        ("postgresql://user@host:5432/name", "postgresql+psycopg://user@host:5432/name"),
        ("postgresql+psycopg://user@host:5432/name", "postgresql+psycopg://user@host:5432/name"),
    ],
)
def test_heroku_style_database_url_is_normalised_to_psycopg(clean_env, given, expected):
    clean_env.setenv("APP_ENV", "development")
    clean_env.setenv("DATABASE_URL", given)
    cfg = load_config()
    assert cfg["SQLALCHEMY_DATABASE_URI"] == expected
    url = sa.engine.make_url(cfg["SQLALCHEMY_DATABASE_URI"])
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database) == ("host", 5432, "name")


@pytest.mark.parametrize("value", [None, ""])
def test_unset_database_url_means_a_sqlite_file_under_instance(clean_env, value):
    clean_env.setenv("APP_ENV", "development")
    if value is not None:
        clean_env.setenv("DATABASE_URL", value)
    cfg = load_config()
    url = sa.engine.make_url(cfg["SQLALCHEMY_DATABASE_URI"])
    assert url.drivername == "sqlite"
    path = Path(url.database)
    assert path.is_absolute()
    assert path.parent == PROJECT_ROOT / "instance"
    assert path.parent.is_dir()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAIL_PORT", "twenty-five"),
        ("MAIL_PORT", "25.5"),
        ("JWT_ACCESS_MINUTES", "15m"),
        ("UPLOAD_MAX_BYTES", "10MB"),
        ("TRUSTED_PROXY_COUNT", "one"),
    ],
)
def test_bad_integer_setting_is_a_config_error(clean_env, name, value):
    clean_env.setenv("APP_ENV", "development")
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_config()


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAIL_USE_TLS", "maybe"), ("CAPTCHA_ENABLED", "2"), ("MAIL_USE_SSL", "enabled")],
)
def test_bad_boolean_setting_is_a_config_error(clean_env, name, value):
    clean_env.setenv("APP_ENV", "development")
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_config()


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("YES", True), ("1", True), ("off", False)])
def test_boolean_settings_accept_the_usual_spellings(clean_env, value, expected):
    clean_env.setenv("APP_ENV", "development")
    clean_env.setenv("MAIL_USE_TLS", value)
    assert load_config()["MAIL_USE_TLS"] is expected


# Health probes ------------------------------------------------------------------


def build_app(database_url, **overrides):
    from crm_app import create_app

    return create_app(
        {"APP_ENV": "test", "SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True, **CHEAP_ARGON2, **overrides}
    )


def dispose(application):
    from crm_app.extensions import db

    with application.app_context():
        db.engine.dispose()


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_answers_ok_with_database_and_redis_reachable(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_answers_503_when_redis_is_unreachable(app, database_url):
    broken = build_app(database_url, REDIS_URL="redis://127.0.0.1:1/0")
    try:
        response = broken.test_client().get("/readyz")
        assert response.status_code == 503
        body = response.get_json()
        assert body["checks"] == {"database": "ok", "redis": "unreachable"}
        assert body["status"] == "unavailable"
        # The process itself is alive: liveness must not follow readiness down.
        assert broken.test_client().get("/healthz").status_code == 200
    finally:
        dispose(broken)


def test_readyz_answers_503_when_the_database_is_unreachable(app):
    broken = build_app("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", REDIS_URL=app.config["REDIS_URL"])
    try:
        response = broken.test_client().get("/readyz")
        assert response.status_code == 503
        body = response.get_json()
        assert body["checks"] == {"database": "unreachable", "redis": "ok"}
        assert body["status"] == "unavailable"
        assert broken.test_client().get("/healthz").status_code == 200
    finally:
        dispose(broken)


def test_readyz_without_redis_configured_checks_only_the_database(app, database_url):
    local = build_app(database_url, REDIS_URL=None)
    try:
        response = local.test_client().get("/readyz")
        assert response.status_code == 200
        assert response.get_json()["checks"] == {"database": "ok"}
    finally:
        dispose(local)


# One error shape ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/no-such-route", "/no-such-page", "/api/v1/admin/users/1/nothing"])
def test_unknown_path_answers_404_in_the_error_shape(client, path):
    assert_error_shape(client.get(path), 404, "not_found")


def test_wrong_method_answers_405_in_the_error_shape_and_keeps_allow(client):
    response = client.delete("/api/v1/auth/login")
    assert_error_shape(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "POST" in allowed
    assert "DELETE" not in allowed


def test_wrong_method_on_a_get_route_keeps_allow(client):
    response = client.post("/api/v1/currencies", json={})
    assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("payload", [b"{not json", b'{"email": "a@b.c",}', b"\xff\xfe\x00garbage"])
def test_invalid_json_answers_400_in_the_error_shape(client, payload):
    response = client.post("/api/v1/auth/login", data=payload, content_type="application/json")
    assert_error_shape(response, 400)


def test_unknown_json_field_answers_422_naming_the_field(client):
    response = client.post(
        "/api/v1/auth/login", json={"email": "someone@example.test", "password": "x", "is_admin": True}
    )
    body = assert_error_shape(response, 422, "validation_error")
    assert "is_admin" in body["errors"], body


def test_unknown_query_parameter_is_ignored_like_a_browser_expects(client):
    """Browsers and libraries add keys of their own (`_t=` cache-busters): a query key the
    route does not read is ignored; bodies stay strict (the test above)."""
    plain = client.get("/api/v1/currencies?method=all")
    response = client.get("/api/v1/currencies?method=all&bogus=1&_t=1733450000000")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == plain.get_json()


def test_missing_field_answers_422_naming_it(client):
    body = assert_error_shape(client.post("/api/v1/auth/login", json={"email": "a@example.test"}), 422)
    assert "password" in body["errors"]


def test_error_message_follows_accept_language(client):
    response = client.get("/api/v1/no-such-route", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert assert_error_shape(response, 404)["message"] == "未找到。"
    response = client.get("/api/v1/no-such-route", headers={"Accept-Language": "zh-TW"})
    assert assert_error_shape(response, 404)["message"] == "找不到。"


def test_missing_token_answers_401_in_the_error_shape(client):
    assert_error_shape(client.get("/api/v1/menus"), 401, "unauthorized")


def test_tampered_token_answers_401_in_the_error_shape(client):
    response = client.get("/api/v1/menus", headers={"Authorization": "Bearer not.a.token"})
    assert_error_shape(response, 401, "token_invalid")


# Junk input: never a 500 --------------------------------------------------------------

PUBLIC_POSTS = ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/email-code", "/api/v1/captcha/verify"]

HUGE = "A1" * 100_000  # 200 kB: under the body limit, far over every field's length limit


def junk_json_bodies():
    """Well-formed JSON that is wrong in every way a client can get it wrong."""
    scalars = [
        None,
        True,
        0,
        -1,
        10**40,
        -(10**40),
        1.5,
        1e308,
        "",
        " ",
        HUGE,
        "\u0000",
        "a\u0000b@example.test",
        "\ud800",
        "x@\ud800.test",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢1234",
        [],
        ["a@example.test"],
        {},
        {"$ne": None},
    ]
    fields = ["email", "password", "email_code", "invite_code", "scene", "received_at"]
    fields += ["app_id", "ticket", "rand_str", "user_ip"]
    bodies = [None, True, 1, "string", [], [{}], {}, {"": ""}, {HUGE: 1}]
    for value in scalars:
        bodies.append(dict.fromkeys(fields, value))
    for value in scalars:
        for field in fields:
            bodies.append({field: value})
    # Plausible bodies with one field wrong.
    good = {
        "email": "junk@example.test",
        "password": "Quartz-Lantern-58",
        "scene": "register",
        "received_at": 1,
        "app_id": 1,
        "ticket": "t",
        "rand_str": "r",
        "user_ip": "127.0.0.1",
    }
    for field in fields:
        for value in scalars:
            bodies.append({**good, field: value})
    nested = {}
    for _ in range(200):
        nested = {"email": [nested], "password": "Quartz-Lantern-58"}
    bodies.append(nested)
    return bodies


def raw_junk_payloads():
    return [
        (os.urandom(2048), "application/json"),
        (os.urandom(2048), "application/octet-stream"),
        (os.urandom(2048), None),
        (b"", "application/json"),
        (b"null", "application/json"),
        (b'{"email": "\xff\xfe@example.test", "password": "\xc3\x28"}', "application/json"),
        (b'{"email": "a@example.test", "email": "b@example.test", "password": "x"}', "application/json"),
        (b"email=a@example.test&password=x", "application/x-www-form-urlencoded"),
        (json.dumps({"email": "a@example.test", "password": "x"}).encode(), "text/plain"),
        (b'{"email": NaN, "password": Infinity}', "application/json"),
        (b"x" * (2 * 1024 * 1024), "application/json"),  # over MAX_CONTENT_LENGTH
    ]


@pytest.mark.parametrize("path", PUBLIC_POSTS)
def test_public_post_routes_never_answer_500_to_junk_json(client, served_500s, path):
    failures = []
    for body in junk_json_bodies():
        response = client.post(path, data=json.dumps(body), content_type="application/json")
        if response.status_code >= 500:
            failures.append((repr(body)[:120], response.status_code, response.get_data(as_text=True)[:200]))
    assert not failures, failures[:10]


@pytest.mark.parametrize("path", PUBLIC_POSTS)
def test_public_post_routes_never_answer_500_to_raw_junk(client, served_500s, path):
    failures = []
    for payload, content_type in raw_junk_payloads():
        kwargs = {"content_type": content_type} if content_type else {}
        response = client.post(path, data=payload, **kwargs)
        if response.status_code >= 500:
            failures.append((payload[:60], content_type, response.status_code))
        else:
            assert set(response.get_json()) == ERROR_KEYS or response.status_code < 300
    assert not failures, failures[:10]


@pytest.mark.parametrize(
    "payload",
    [b"[" * 5000 + b"]" * 5000, b'{"email":' * 5000 + b"1" + b"}" * 5000],
    ids=["deep-array", "deep-object"],
)
def test_deeply_nested_json_answers_400_not_500(client, served_500s, payload):
    response = client.post("/api/v1/auth/login", data=payload, content_type="application/json")
    assert_error_shape(response, 400)


@pytest.mark.parametrize("path", PUBLIC_POSTS)
def test_public_post_routes_never_answer_500_to_junk_headers(client, served_500s, path):
    headers = {
        "Captcha-Token": HUGE[:10_000],
        "Captcha-Randstr": "\u00ff" * 500,
        "Captcha-Action": "x" * 5000,
        "Accept-Language": "zh-" + "x" * 5000,
        "Authorization": "Bearer " + "a.b.c" * 100,
        "X-Forwarded-For": "not-an-ip, " * 50,
        "User-Agent": "u" * 10_000,
    }
    response = client.post(path, json={"email": "a@example.test", "password": "x"}, headers=headers)
    assert response.status_code < 500, response.get_data(as_text=True)


SURROGATE_BUG = (
    'BUG: a JSON string holding a lone UTF-16 surrogate (valid JSON, e.g. "\\ud800") reaches argon2, '
    "whose str.encode('utf-8') raises UnicodeEncodeError: a 500 in production"
)


@pytest.mark.parametrize("known_email", [True, False], ids=["known-email", "unknown-email"])
def test_login_with_a_lone_surrogate_in_the_password_is_a_4xx_not_a_500(client, factory, served_500s, known_email):
    email = factory.user().email if known_email else "nobody@example.test"
    response = client.post(
        "/api/v1/auth/login",
        data=json.dumps({"email": email, "password": "Passw0rd\ud800"}),
        content_type="application/json",
    )
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)


def without_register_email_code():
    from crm_app.broker.services import update_setting

    update_setting("broker", {"email_code_required": {"register": False}}, actor=None, client=None)


def test_register_with_a_lone_surrogate_in_the_password_is_a_4xx_not_a_500(client, ctx, served_500s):
    without_register_email_code()
    response = client.post(
        "/api/v1/auth/register",
        data=json.dumps({"email": "surrogate@example.test", "password": "Passw0rd\ud800"}),
        content_type="application/json",
    )
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.status_code != 201


def test_passwords_outside_the_basic_plane_work_end_to_end(client, ctx):
    without_register_email_code()
    password = "P\u00e4ssw0rd\U0001d518\u5bc6\u7801"
    body = {"email": "astral@example.test", "password": password}
    assert client.post("/api/v1/auth/register", json=body).status_code == 201
    assert client.post("/api/v1/auth/login", json=body).status_code == 200
    wrong = {"email": "astral@example.test", "password": password[:-1]}
    assert_error_shape(client.post("/api/v1/auth/login", json=wrong), 401, "invalid_credentials")


# Migrations -------------------------------------------------------------------------


def subprocess_env(database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "MAIL_", "REDIS_"))}
    for name in ("DATABASE_URL", *SECRET_NAMES):
        env.pop(name, None)
    env.update(
        {
            "APP_ENV": "test",
            "DATABASE_URL": database_url,
            "UPLOAD_FOLDER": str(tmp_path / "uploads"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def flask_db_upgrade(database_url, tmp_path):
    """`flask db upgrade` exactly as the Procfile's release phase runs it: from the
    project root, with no FLASK_APP."""
    return subprocess.run(
        [FLASK, "db", "upgrade"],
        cwd=PROJECT_ROOT,
        env=subprocess_env(database_url, tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def empty_postgres():
    """A fresh, empty PostgreSQL database of this test's own, as a Heroku-style URL."""
    from tests.conftest import _psycopg_url

    name = f"crm_migr_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_engine = sa.create_engine(_psycopg_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    psycopg_url = f"{_psycopg_url(ADMIN_URL).rsplit('/', 1)[0]}/{name}"
    heroku_url = "postgres://" + psycopg_url.split("://", 1)[1]
    try:
        yield heroku_url, psycopg_url
    finally:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def migration_heads():
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_heads())


def schema_differences(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from crm_app import import_models
    from crm_app.extensions import db

    import_models()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        return compare_metadata(context, db.metadata)


def test_flask_db_upgrade_builds_an_empty_postgres_database(empty_postgres, tmp_path):
    heroku_url, psycopg_url = empty_postgres
    result = flask_db_upgrade(heroku_url, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    engine = sa.create_engine(psycopg_url)
    try:
        with engine.connect() as conn:
            versions = set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
        assert versions == migration_heads()
        tables = set(sa.inspect(engine).get_table_names())
        from crm_app import import_models
        from crm_app.extensions import db

        import_models()
        assert set(db.metadata.tables) <= tables
    finally:
        engine.dispose()

    # The release phase runs on every deploy: a second run is a no-op.
    again = flask_db_upgrade(heroku_url, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr


def test_models_match_the_migrations_on_postgres(empty_postgres, tmp_path):
    heroku_url, psycopg_url = empty_postgres
    result = flask_db_upgrade(heroku_url, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    engine = sa.create_engine(psycopg_url)
    try:
        differences = schema_differences(engine)
    finally:
        engine.dispose()
    assert differences == [], "models and migrations differ:\n" + "\n".join(map(repr, differences))


def test_flask_db_upgrade_builds_a_fresh_sqlite_file(tmp_path):
    path = tmp_path / "fresh.db"
    result = flask_db_upgrade(f"sqlite:///{path}", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert path.exists()
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            versions = set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
        assert versions == migration_heads()
        from crm_app import import_models
        from crm_app.extensions import db

        import_models()
        assert set(db.metadata.tables) <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
