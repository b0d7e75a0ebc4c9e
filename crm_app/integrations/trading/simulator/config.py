"""Which servers the simulator hosts, and where it keeps its book.

Servers come from (first match wins): the `servers` given to `create_simulator_app`, a JSON
file (`--config` or MT_SIM_CONFIG), or - when the database holds no server yet - the demo
defaults below. A definition is upserted, so editing the file and restarting applies it;
the book (accounts, deals...) is never touched by configuration.

JSON format ("session_expired_answer": "403" or "retcode8", "refuse_group_reads": true|false
are optional; env MT_SIM_SESSION_EXPIRED_ANSWER / MT_SIM_REFUSE_GROUP_READS win):
    {"servers": [{
        "key": "mt5-demo",                 # URL prefix: http://host:port/mt5-demo/api/...
        "name": "MT5 Demo", "platform": "MT5", "kind": "demo",
        "manager_login": 1000, "manager_password": "...",
        "login_start": 5900000, "login_end": 5999999,
        "timezone_minutes": 120,           # MT's TimeZone: minutes east of UTC, no DST...
        "timezone": "Europe/Nicosia",      # ...or an IANA zone for a server that follows DST (wins)
        "groups": [{"name": "demo\\\\standard-usd", "currency": "USD", "leverage_max": 500,
                    "password_min_length": 8, "password_policy": "classic",
                    "commission_per_lot": "0", "stop_out_level": "50"}]
    }]}
"""

import json
import os
from pathlib import Path

from crm_app.config import PROJECT_ROOT

DEFAULT_MANAGER_LOGIN = 1000
# A documented demo credential, not a secret: the demo's server records use the same value.
DEFAULT_MANAGER_PASSWORD = "Sim-Manager-1"  # noqa: S105
DEFAULT_TIMEZONE_MINUTES = 120  # GMT+2, as many retail MT servers run (IANA: Etc/GMT-2)
DEFAULT_SESSION_IDLE_SECONDS = 180
# What a call on an expired or dropped manager session gets. MetaQuotes do not document it:
# "403" is an HTTP 403, "retcode8" a normal answer carrying "8 Not enough permissions".
SESSION_EXPIRED_ANSWERS = ("403", "retcode8")
DEFAULT_SESSION_EXPIRED_ANSWER = "403"


def default_database_url():
    instance = PROJECT_ROOT / "instance"
    instance.mkdir(exist_ok=True)
    return f"sqlite:///{instance / 'mt_sim.db'}"


def database_url(explicit=None):
    return explicit or os.environ.get("MT_SIM_DATABASE_URL") or default_database_url()


def session_idle_seconds(explicit=None):
    if explicit is not None:
        return float(explicit)
    return float(os.environ.get("MT_SIM_SESSION_IDLE_SECONDS") or DEFAULT_SESSION_IDLE_SECONDS)


def session_expired_answer(explicit=None, file_settings=None):
    """Env MT_SIM_SESSION_EXPIRED_ANSWER, or the config file's "session_expired_answer"."""
    value = (
        explicit
        or os.environ.get("MT_SIM_SESSION_EXPIRED_ANSWER")
        or (file_settings or {}).get("session_expired_answer")
    )
    value = str(value or DEFAULT_SESSION_EXPIRED_ANSWER).strip().lower()
    if value not in SESSION_EXPIRED_ANSWERS:
        raise ValueError(f"session_expired_answer must be one of {SESSION_EXPIRED_ANSWERS}, not {value!r}")
    return value


def refuse_group_reads(explicit=None, file_settings=None):
    """A manager without the right to read group configuration (env MT_SIM_REFUSE_GROUP_READS,
    or the config file's "refuse_group_reads"): /api/group/get answers "8 Not enough permissions"."""
    if explicit is not None:
        return bool(explicit)
    raw = os.environ.get("MT_SIM_REFUSE_GROUP_READS")
    if raw is not None and raw.strip():
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return bool((file_settings or {}).get("refuse_group_reads", False))


def load_settings_file(path):
    """The simulator-wide settings of a JSON config file (keys next to "servers")."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if key != "servers"} if isinstance(data, dict) else {}


def manager_credentials():
    """The demo manager login and password, shared with the CRM's demo server records."""
    login = int(os.environ.get("MT_SIMULATOR_MANAGER_LOGIN") or DEFAULT_MANAGER_LOGIN)
    password = os.environ.get("MT_SIMULATOR_MANAGER_PASSWORD") or DEFAULT_MANAGER_PASSWORD
    return login, password


def _group(name, currency="USD", leverage_max=500, commission_per_lot="0", min_length=8):
    return {
        "name": name,
        "currency": currency,
        "leverage_max": leverage_max,
        "password_min_length": min_length,
        "password_policy": "classic",
        "commission_per_lot": commission_per_lot,
        "stop_out_level": "50",
    }


def default_servers():
    """MT4 and MT5, live and demo: what the demo broker connects to out of the box."""
    login, password = manager_credentials()
    common = {"manager_login": login, "manager_password": password, "timezone_minutes": DEFAULT_TIMEZONE_MINUTES}
    return [
        {
            "key": "mt5-live",
            "name": "MT5 Live (simulated)",
            "platform": "MT5",
            "kind": "live",
            "login_start": 5100000,
            "login_end": 5199999,
            "groups": [
                _group("real\\standard-usd"),
                _group("real\\pro-usd", leverage_max=200, commission_per_lot="3.50"),
                _group("real\\standard-eur", currency="EUR"),
            ],
            **common,
        },
        {
            "key": "mt5-demo",
            "name": "MT5 Demo (simulated)",
            "platform": "MT5",
            "kind": "demo",
            "login_start": 5900000,
            "login_end": 5999999,
            "groups": [_group("demo\\standard-usd"), _group("demo\\pro-usd", commission_per_lot="3.50")],
            **common,
        },
        {
            "key": "mt4-live",
            "name": "MT4 Live (simulated)",
            "platform": "MT4",
            "kind": "live",
            "login_start": 4100000,
            "login_end": 4199999,
            "groups": [
                _group("real-standard-usd", min_length=5),
                _group("real-pro-usd", leverage_max=200, commission_per_lot="3.50", min_length=5),
            ],
            **common,
        },
        {
            "key": "mt4-demo",
            "name": "MT4 Demo (simulated)",
            "platform": "MT4",
            "kind": "demo",
            "login_start": 4900000,
            "login_end": 4999999,
            "groups": [_group("demo-standard-usd", min_length=5)],
            **common,
        },
    ]


def load_server_file(path):
    """Server definitions from a JSON file: {"servers": [...]} or a bare list."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    servers = data["servers"] if isinstance(data, dict) else data
    for server in servers:
        missing = {"key", "manager_login", "manager_password", "login_start", "login_end"} - set(server)
        if missing:
            raise ValueError(f"server {server.get('key', '?')}: missing {', '.join(sorted(missing))}")
    return servers
