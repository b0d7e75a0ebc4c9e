"""The database connection of a request, and cheap checks that pooled connections live.

A GET under /api/ on PostgreSQL reads on one pooled connection in autocommit: no
BEGIN/ROLLBACK round trips, and the driver keeps its prepared statements (a ROLLBACK
would drop them). The token check and plain-row reads use that connection directly
(`read_connection()`); the ORM session, if the view needs it, is bound to the same
connection, so a request still checks out one connection. Whatever a GET writes
(cached trading figures) is a single statement that needs no transaction.

Every other request (and SQLite) reads inside the session's transaction, so a write
sees what its own checks read.
"""

import logging
import time

from flask import g, has_request_context, request
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError

log = logging.getLogger(__name__)

READ_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))


class RequestSession(FlaskSession):
    """Flask-SQLAlchemy's session, bound to the request's read connection when it has one."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and has_request_context():
            connection = g.get("read_connection")
            if connection is not None:
                return connection
        return super().get_bind(mapper, clause=clause, bind=bind, **kwargs)


def read_connection():
    """The connection plain-row reads of this request go through."""
    from crm_app.extensions import db

    connection = g.get("read_connection")
    if connection is not None:
        return connection
    if g.get("read_only_request"):
        connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        g.read_connection = connection
        return connection
    return db.session.connection()


def fetch_rows(statement, params=None):
    """All rows of a fixed Core SELECT, as tuples, on the request's connection.

    On a read-only PostgreSQL request the statement, compiled once, goes straight to
    the driver (which prepares it after a few runs): the token check and the menu tree
    run on every page load, and this skips SQLAlchemy's per-execution work for them.
    Elsewhere it is an ordinary execution.

    When it is the request's first statement and the pooled connection turns out dead
    (the database restarted while it sat in the pool), it runs again once on a new
    connection: nothing has happened in the request yet, so the retry is safe.
    """
    from crm_app.extensions import db

    first_statement = g.get("read_connection") is None and not (
        db.session.registry.has() and db.session().in_transaction()
    )
    try:
        return _fetch_rows(statement, params)
    except Exception as exc:
        if not (first_statement and _connection_lost(exc)):
            raise
        log.warning("database connection lost; retrying on a new one")
        _discard_request_connection(db)
        return _fetch_rows(statement, params)


def _fetch_rows(statement, params):
    connection = read_connection()
    if g.get("read_only_request") and connection.dialect.driver == "psycopg":
        sql, defaults = _driver_sql(statement, connection.dialect)
        cursor = connection.connection.driver_connection.execute(sql, {**defaults, **(params or {})})
        return cursor.fetchall()
    return connection.execute(statement, params or {}).all()


def _connection_lost(exc):
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    connection = g.get("read_connection")
    driver_connection = connection.connection.driver_connection if connection is not None else None
    return bool(driver_connection is not None and getattr(driver_connection, "broken", False))


def _discard_request_connection(db):
    connection = g.pop("read_connection", None)
    if connection is not None:
        connection.invalidate()
        connection.close()
        # The driver reported it, not SQLAlchemy: renew the pool as SQLAlchemy does on a
        # disconnect, since its other connections died with this one.
        db.engine.dispose(close=False)
    else:
        # SQLAlchemy saw the disconnect and has marked the whole pool for renewal.
        db.session.rollback()


_compiled = {}


def _driver_sql(statement, dialect):
    key = (id(statement), dialect.name)
    entry = _compiled.get(key)
    if entry is None:
        compiled = statement.compile(dialect=dialect)
        # The statement stays referenced, so its id is never reused for another one.
        entry = _compiled[key] = (compiled.string, dict(compiled.params), statement)
    return entry[0], entry[1]


def configure_request_connections(app, db):
    postgres = db.engine.dialect.name == "postgresql"

    @app.before_request
    def mark_read_only_request():
        if postgres and request.method in READ_METHODS and request.path.startswith("/api/"):
            g.read_only_request = True

    @app.teardown_appcontext
    def release_read_connection(exc):
        connection = g.pop("read_connection", None)
        if connection is not None:
            # The session may hold the connection: end it first, then give the
            # connection back to the pool.
            db.session.remove()
            connection.close()

    idle_seconds = app.config.get("DATABASE_POOL_PING_IDLE_SECONDS")
    if idle_seconds and not app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("pool_pre_ping"):
        app.extensions["crm_idle_ping"] = IdlePing(db.engine, idle_seconds)


class IdlePing:
    """Ping a pooled connection at checkout only when it sat idle for a while.

    A connection in steady use costs no extra round trip (pre-ping would cost one per
    request); one that sat idle, for instance across a database restart, is checked
    and silently replaced when dead. A connection in steady use that the database
    dropped is caught by `fetch_rows` (the request's first statement runs again).
    """

    def __init__(self, engine, idle_seconds):
        self.idle_seconds = idle_seconds
        event.listen(engine, "checkin", self.remember_checkin)
        event.listen(engine, "checkout", self.ping_if_idle)
        self.engine = engine

    @staticmethod
    def remember_checkin(dbapi_connection, connection_record):
        connection_record.info["checked_in_at"] = time.monotonic()

    def ping_if_idle(self, dbapi_connection, connection_record, connection_proxy):
        checked_in_at = connection_record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < self.idle_seconds:
            return
        try:
            self.engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("pooled connection is dead") from exc
