"""The MT simulator on a free loopback port, for tests that need a real trading server over HTTP.

    with start_simulator(tmp_path) as sim:
        gateway = MT5WebAPIGateway(sim.server_url("mt5-demo"), sim.manager_login, sim.manager_password,
                                   timezone=sim.timezone_minutes)
        sim.control("POST", "/sim/faults", {"error_rate": 1})

It runs in a background thread of the test process (werkzeug's threaded server), with its
own database: a SQLite file under the test's directory, or - when MT_SIM_TEST_POSTGRES_ADMIN_URL
is set (e.g. postgresql://postgres@127.0.0.1:5432/test) - a PostgreSQL database created for it
and dropped afterwards. `restart()` stops it and starts a new app instance on the same port and
database, as a restarted simulator process would.
"""

import logging
import os
import threading
import uuid

import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from crm_app.integrations.trading.simulator import create_simulator_app

MANAGER_LOGIN = 1000
MANAGER_PASSWORD = "Test-Manager#7"
TIMEZONE_MINUTES = 120


def simulated_servers(manager_login=MANAGER_LOGIN, manager_password=MANAGER_PASSWORD):
    """Servers the tests rely on: an MT5 demo and live server, an MT4 one, and one with three logins."""
    common = {
        "manager_login": manager_login,
        "manager_password": manager_password,
        "timezone_minutes": TIMEZONE_MINUTES,
    }
    usd = {"currency": "USD", "leverage_max": 500, "commission_per_lot": "0"}
    return [
        {
            "key": "mt5-demo",
            "platform": "MT5",
            "kind": "demo",
            "login_start": 5900000,
            "login_end": 5999999,
            "groups": [
                {"name": "demo\\standard-usd", **usd},
                {"name": "demo\\pro-usd", **usd, "commission_per_lot": "3.50"},
                {"name": "demo\\standard-eur", **usd, "currency": "EUR"},
                {"name": "demo\\strict-usd", **usd, "password_policy": "strict"},
            ],
            **common,
        },
        {
            "key": "mt5-live",
            "platform": "MT5",
            "kind": "live",
            "login_start": 5100000,
            "login_end": 5199999,
            "groups": [
                {"name": "real\\standard-usd", **usd, "leverage_max": 200},
                # Live groups that take money in and out, in two currencies (the live-money rules).
                {"name": "real\\normal-usd", **usd},
                {"name": "real\\normal-eur", **usd, "currency": "EUR"},
            ],
            **common,
        },
        {
            "key": "mt4-live",
            "platform": "MT4",
            "kind": "live",
            "login_start": 4100000,
            "login_end": 4199999,
            "groups": [{"name": "real-standard-usd", **usd}],
            **common,
        },
        {
            "key": "mt5-tiny",
            "platform": "MT5",
            "kind": "demo",
            "login_start": 7000000,
            "login_end": 7000002,
            "groups": [{"name": "demo\\standard-usd", **usd}],
            **common,
        },
    ]


class RunningSimulator:
    def __init__(self, database_url, servers=None, session_idle_seconds=300.0, on_close=None):
        self.database_url = database_url
        self.on_close = on_close
        self.servers = simulated_servers() if servers is None else servers
        self.session_idle_seconds = session_idle_seconds
        self.manager_login = MANAGER_LOGIN
        self.manager_password = MANAGER_PASSWORD
        self.timezone_minutes = TIMEZONE_MINUTES
        self.port = 0
        self._server = None
        self._thread = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def server_url(self, key):
        return f"{self.base_url}/{key}"

    def start(self):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = create_simulator_app(
            self.database_url, servers=self.servers, session_idle_seconds=self.session_idle_seconds
        )
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="mt-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def restart(self):
        """A new simulator process in all but name: same port, same database, nothing kept in memory."""
        self.stop()
        return self.start()

    def control(self, method, path, body=None):
        """Call a /sim control route; answers the decoded JSON, asserting a 2xx status."""
        response = requests.request(method, self.base_url + path, json=body, timeout=30)
        assert response.status_code < 300, (response.status_code, response.text)
        return response.json()

    def faults(self, **settings):
        return self.control("POST", "/sim/faults", settings)

    def sessions(self, **settings):
        """Session settings: session_expired_answer ("403" or "retcode8"), refuse_group_reads."""
        return self.control("POST", "/sim/sessions", settings)

    def drop_sessions(self):
        """Forget every manager session, as a server restart or a load balancer would."""
        return self.control("POST", "/sim/sessions/drop")

    def close(self):
        self.stop()
        if self.on_close:
            self.on_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def fresh_postgres_database(admin_url):
    """A new, empty PostgreSQL database; answers its URL and a function that drops it."""
    admin_url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"mt_sim_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{admin_url.rsplit('/', 1)[0]}/{name}", drop


def start_simulator(directory=None, database_url=None, **options):
    """A started simulator with a database of its own (see the module docstring)."""
    drop = None
    if database_url is None and os.environ.get("MT_SIM_TEST_POSTGRES_ADMIN_URL"):
        database_url, drop = fresh_postgres_database(os.environ["MT_SIM_TEST_POSTGRES_ADMIN_URL"])
    url = database_url or f"sqlite:///{directory}/mt_sim.db"
    return RunningSimulator(url, on_close=drop, **options).start()
