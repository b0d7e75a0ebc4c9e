"""The baseline for the authenticated-GET bench: a bare Flask app.

It answers `GET /api/v1/menus` with the same JSON as the real app and does the same
work per request, without flask-smorest, marshmallow, Flask-JWT-Extended or the
SQLAlchemy ORM:

1. read the bearer token and verify its HS256 signature and expiry with PyJWT,
   using the same `JWT_SECRET_KEY` (and, like the real app, accept access tokens only);
2. look the user up joined with the token's session (the same SQL the real app runs:
   revoked session or a bumped `token_version` is a 401);
3. one query for the visible menu rows of the user's type, built into a tree.

The database is reached through psycopg directly: a psycopg_pool ConnectionPool when
that package is installed, otherwise one connection per worker process (a sync
gunicorn worker serves one request at a time, so that is all a pool would hand out).
Both read in autocommit mode: two statements, two round trips.

Run it like the real app: `gunicorn bench.bare_app:app` with `DATABASE_URL` and
`JWT_SECRET_KEY` set.
"""

import contextlib
import os
import threading

import jwt
import psycopg
from flask import Flask, request

try:
    from psycopg_pool import ConnectionPool
except ImportError:  # the package is optional: one connection per process then
    ConnectionPool = None

USER_SQL = (
    "SELECT users.id, users.email, users.email_key, users.password_hash, users.user_type, users.status, "
    "users.first_name, users.last_name, users.parent_ib_id, users.referral_code, users.token_version, "
    "users.language, users.created_at, users.updated_at, users.last_login_at, auth_sessions.revoked_at "
    "FROM users JOIN auth_sessions ON auth_sessions.user_id = users.id "
    "WHERE users.id = %s AND auth_sessions.id = %s"
)
USER_TYPE, TOKEN_VERSION, REVOKED_AT = 4, 10, 15

MENU_SQL = (
    'SELECT id, user_type, parent_id, key, title, path, icon, action, "desc", sort_order, status '
    "FROM menus WHERE user_type = %s AND status = 1 ORDER BY sort_order, id"
)

MESSAGES = {
    "unauthorized": "Authentication is required.",
    "token_expired": "The token has expired.",
    "token_invalid": "The token is invalid.",
    "token_revoked": "The token has been revoked.",
}


def conninfo_from_env():
    """`DATABASE_URL` as Heroku-style hosts give it (`postgres://...`) or as SQLAlchemy spells it."""
    url = os.environ["DATABASE_URL"]
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class Database:
    """Connections made lazily, in the worker process (never in a forking parent)."""

    def __init__(self, conninfo):
        self.conninfo = conninfo
        self.lock = threading.Lock()
        self.pool = None
        self.conn = None

    @contextlib.contextmanager
    def connection(self):
        """One connection for the whole request, as the real app's session holds one."""
        if ConnectionPool is not None:
            if self.pool is None:
                with self.lock:
                    if self.pool is None:
                        self.pool = ConnectionPool(self.conninfo, min_size=1, kwargs={"autocommit": True}, open=True)
            with self.pool.connection() as conn:
                yield conn
            return
        with self.lock:
            if self.conn is None or self.conn.closed or self.conn.broken:
                self.conn = psycopg.connect(self.conninfo, autocommit=True)
            yield self.conn


def error(code):
    return {"code": code, "status": 401, "message": MESSAGES[code], "errors": {}}, 401


def menu_as_dict(row):
    menu_id, user_type, parent_id, key, title, path, icon, action, desc, sort_order, status = row
    return {
        "id": menu_id,
        "parent_id": parent_id or 0,
        "key": key,
        "title": title,
        "path": path,
        "icon": icon,
        "action": action,
        "desc": desc,
        "sort_order": sort_order,
        "status": status,
        "user_type": user_type,
        "children": [],
    }


def menu_tree(rows):
    nodes = {row[0]: menu_as_dict(row) for row in rows}
    roots = []
    for row in rows:
        parent = nodes.get(row[2]) if row[2] else None
        (parent["children"] if parent else roots).append(nodes[row[0]])
    return roots


def create_app():
    app = Flask(__name__)
    app.json.sort_keys = False
    secret = os.environ["JWT_SECRET_KEY"]
    database = Database(conninfo_from_env())

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/api/v1/menus")
    def menus():
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return error("unauthorized")
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            return error("token_expired")
        except jwt.InvalidTokenError:
            return error("token_invalid")
        if claims.get("type") != "access":
            return error("token_invalid")
        try:
            user_id, session_id, version = int(claims["sub"]), str(claims["sid"]), int(claims["ver"])
        except (KeyError, TypeError, ValueError):
            return error("token_revoked")

        with database.connection() as conn, conn.cursor() as cur:
            cur.execute(USER_SQL, (user_id, session_id))
            user = cur.fetchone()
            if user is None or user[REVOKED_AT] is not None or user[TOKEN_VERSION] != version:
                return error("token_revoked")
            cur.execute(MENU_SQL, (user[USER_TYPE],))
            rows = cur.fetchall()
        return {"list": menu_tree(rows)}

    return app


app = create_app()
