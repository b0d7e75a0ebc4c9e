"""The simulator's own tables (its own MetaData, never the CRM's) and engine.

State lives in a database so that the simulator survives restarts and several simulator
processes (web and worker machines of a demo) can share one book. Money and prices are
stored exactly: NUMERIC on PostgreSQL, decimal text on SQLite (which has no exact type).
"""

from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


class Money(TypeDecorator):
    """An exact Decimal on every backend."""

    impl = String(48)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(30, 10))
        return dialect.type_descriptor(String(48))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value)
        return value if dialect.name == "postgresql" else format(value, "f")

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(str(value))


# SQLite only numbers rows with INTEGER PRIMARY KEY; AUTOINCREMENT keeps numbers from being reused.
Ticket = BigInteger().with_variant(Integer, "sqlite")

servers = Table(
    "mtsim_servers",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("platform", String(3), nullable=False),  # MT4 | MT5
    Column("kind", String(4), nullable=False),  # live | demo
    Column("manager_login", BigInteger, nullable=False),
    # MD5(MD5(password as UTF-16LE) + "WebAPI"), hex: all the handshake needs, as on a real server.
    Column("manager_password_hash", String(32), nullable=False),
    Column("login_start", BigInteger, nullable=False),
    Column("login_end", BigInteger, nullable=False),
    Column("timezone_minutes", Integer, nullable=False, default=0),
    # An IANA zone when the server follows daylight saving time (MT's "Daylight" setting); it wins.
    Column("timezone_name", String(64), nullable=True),
)

groups = Table(
    "mtsim_groups",
    metadata,
    Column("server_key", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("currency", String(8), nullable=False),
    Column("leverage_max", Integer, nullable=False),
    Column("password_min_length", Integer, nullable=False),
    Column("password_policy", String(16), nullable=False, default="classic"),
    Column("commission_per_lot", Money, nullable=False),  # charged on each deal side
    Column("stop_out_level", Money, nullable=False),  # margin level in percent
)

accounts = Table(
    "mtsim_accounts",
    metadata,
    Column("id", Ticket, primary_key=True, autoincrement=True),
    Column("server_key", String(64), nullable=False),
    Column("login", BigInteger, nullable=False),
    Column("group_name", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("email", String(128), nullable=False, default=""),
    Column("country", String(64), nullable=False, default=""),
    Column("comment", String(64), nullable=False, default=""),
    Column("leverage", Integer, nullable=False),
    Column("registration", BigInteger, nullable=False),  # server time
    Column("last_pass_change", BigInteger, nullable=False),
    Column("main_password_hash", String(32), nullable=False),
    Column("investor_password_hash", String(32), nullable=False),
    Column("balance", Money, nullable=False),
    Column("credit", Money, nullable=False),
    UniqueConstraint("server_key", "login", name="uq_mtsim_accounts_login"),
    sqlite_autoincrement=True,
)

deals = Table(
    "mtsim_deals",
    metadata,
    Column("ticket", Ticket, primary_key=True, autoincrement=True),
    Column("server_key", String(64), nullable=False),
    Column("login", BigInteger, nullable=False),
    Column("time", BigInteger, nullable=False),  # server time, seconds
    Column("time_msc", BigInteger, nullable=False),
    Column("action", Integer, nullable=False),
    Column("entry", Integer, nullable=False),
    Column("reason", Integer, nullable=False, default=0),
    Column("symbol", String(32), nullable=False, default=""),
    Column("volume_ext", BigInteger, nullable=False, default=0),  # 1/100000000 lot
    Column("price", Money, nullable=False),
    Column("price_position", Money, nullable=False),
    Column("price_sl", Money, nullable=False),
    Column("price_tp", Money, nullable=False),
    Column("profit", Money, nullable=False),
    Column("commission", Money, nullable=False),
    Column("storage", Money, nullable=False),
    Column("position_id", BigInteger, nullable=False, default=0),
    Column("order_ticket", BigInteger, nullable=False, default=0),
    Column("comment", String(32), nullable=False, default=""),
    Index("ix_mtsim_deals_login_time", "server_key", "login", "time"),
    sqlite_autoincrement=True,
)

orders = Table(
    "mtsim_orders",
    metadata,
    Column("ticket", Ticket, primary_key=True, autoincrement=True),
    Column("server_key", String(64), nullable=False),
    Column("login", BigInteger, nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("type", Integer, nullable=False),
    Column("state", Integer, nullable=False),
    Column("reason", Integer, nullable=False, default=0),
    Column("time_setup", BigInteger, nullable=False),
    Column("time_done", BigInteger, nullable=False, default=0),
    Column("volume_initial_ext", BigInteger, nullable=False),
    Column("volume_current_ext", BigInteger, nullable=False),
    Column("price_order", Money, nullable=False),
    Column("price_trigger", Money, nullable=False),
    Column("price_current", Money, nullable=False),
    Column("price_sl", Money, nullable=False),
    Column("price_tp", Money, nullable=False),
    Column("position_id", BigInteger, nullable=False, default=0),
    Column("comment", String(32), nullable=False, default=""),
    Column("is_open", Boolean, nullable=False),  # a working pending order, not yet history
    Index("ix_mtsim_orders_open", "server_key", "login", "is_open"),
    Index("ix_mtsim_orders_done", "server_key", "login", "time_done"),
    sqlite_autoincrement=True,
)

positions = Table(
    "mtsim_positions",
    metadata,
    # As on MT5: a position is known by the ticket of the order that opened it.
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("server_key", String(64), nullable=False),
    Column("login", BigInteger, nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("action", Integer, nullable=False),  # 0 buy, 1 sell
    Column("volume_ext", BigInteger, nullable=False),
    Column("price_open", Money, nullable=False),
    Column("price_sl", Money, nullable=False),
    Column("price_tp", Money, nullable=False),
    Column("time_create", BigInteger, nullable=False),
    Column("time_update", BigInteger, nullable=False),
    Column("storage", Money, nullable=False),
    Column("commission", Money, nullable=False),
    Column("comment", String(32), nullable=False, default=""),
    Column("reason", Integer, nullable=False, default=0),
    Index("ix_mtsim_positions_login", "server_key", "login"),
)

prices = Table(
    "mtsim_prices",
    metadata,
    Column("symbol", String(32), primary_key=True),
    Column("bid", Money, nullable=False),
    Column("ask", Money, nullable=False),
)

sessions = Table(
    "mtsim_sessions",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("server_key", String(64), nullable=False),
    Column("manager_login", BigInteger, nullable=False),
    Column("srv_rand", String(32), nullable=False),
    Column("started_at", Float, nullable=False),  # real (not simulated) Unix time
    Column("authenticated", Boolean, nullable=False, default=False),
    Column("last_seen", Float, nullable=False),
)

state = Table(
    "mtsim_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
)


def normalise_url(url):
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url):
    """An engine whose write transactions serialise, so a free-margin check cannot race a withdrawal.

    PostgreSQL gets row locks (SELECT ... FOR UPDATE in the book); SQLite has none, so every
    transaction starts with BEGIN IMMEDIATE (one writer at a time, across processes too).
    """
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def configure_sqlite(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_tables(engine):
    """Create what is missing; columns added since a database was made are added too."""
    metadata.create_all(engine)
    present = {column["name"] for column in inspect(engine).get_columns("mtsim_servers")}
    if "timezone_name" not in present:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE mtsim_servers ADD COLUMN timezone_name VARCHAR(64)")
