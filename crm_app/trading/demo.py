"""Demo trading servers (the project's MT simulator), account types and platforms."""

import os

from sqlalchemy import select

from crm_app.common import crypto
from crm_app.extensions import db
from crm_app.trading.models import AccountType, Platform, TradingServer
from crm_app.trading.services import MANAGER_PASSWORD_PURPOSE

# (name, simulator key, platform, demo, first login, last login)
SERVERS = [
    ("Demo MT5", "mt5-demo", "MT5", True, 5900000, 5999999),
    ("Live MT5", "mt5-live", "MT5", False, 5100000, 5199999),
    ("Demo MT4", "mt4-demo", "MT4", True, 4900000, 4999999),
    ("Live MT4", "mt4-live", "MT4", False, 4100000, 4199999),
]
# (name, server name, MT group, leverage options, fund direction)
ACCOUNT_TYPES = [
    ("Demo Standard", "Demo MT5", "demo\\standard-usd", [50, 100, 200, 500], "normal"),
    ("Standard", "Live MT5", "real\\standard-usd", [50, 100, 200], "normal"),
    ("Pro", "Live MT5", "real\\pro-usd", [50, 100], "normal"),
    ("Demo Classic", "Demo MT4", "demo-standard-usd", [100, 200], "normal"),
    ("Classic", "Live MT4", "real-standard-usd", [100, 200], "normal"),
]
PLATFORMS = [
    (
        "MetaTrader 5",
        "Multi-asset platform: hedging and netting, depth of market.",
        "https://download.mql5.com/cdn/web/metaquotes.software.corp/mt5/mt5setup.exe",
    ),
    (
        "MetaTrader 4",
        "The classic forex platform.",
        "https://download.mql5.com/cdn/web/metaquotes.software.corp/mt4/mt4setup.exe",
    ),
]


def seed_trading_demo():
    simulator_url = os.environ.get("MT_SIMULATOR_URL", "http://127.0.0.1:5005").rstrip("/")
    manager_login = int(os.environ.get("MT_SIMULATOR_MANAGER_LOGIN") or 1000)
    manager_password = os.environ.get("MT_SIMULATOR_MANAGER_PASSWORD") or "Sim-Manager-1"
    servers = {s.name: s for s in db.session.scalars(select(TradingServer))}
    for name, key, platform, is_demo, first, last in SERVERS:
        if name not in servers:
            servers[name] = TradingServer(
                name=name,
                platform=platform,
                is_demo=is_demo,
                base_url=f"{simulator_url}/{key}",
                manager_login=manager_login,
                manager_password_encrypted=crypto.encrypt(manager_password, MANAGER_PASSWORD_PURPOSE),
                # The simulator's servers run at a fixed UTC+2, as many brokers' do.
                timezone="Etc/GMT-2",
                next_login=first,
                last_login=last,
            )
            db.session.add(servers[name])
    db.session.flush()
    existing_types = set(db.session.scalars(select(AccountType.name)))
    for order, (name, server_name, group, leverages, direction) in enumerate(ACCOUNT_TYPES):
        if name not in existing_types:
            db.session.add(
                AccountType(
                    name=name,
                    server_id=servers[server_name].id,
                    mt_group=group,
                    leverage_options=leverages,
                    fund_direction=direction,
                    sort_order=order,
                )
            )
    existing_platforms = set(db.session.scalars(select(Platform.name)))
    for order, (name, description, windows_url) in enumerate(PLATFORMS):
        if name not in existing_platforms:
            db.session.add(
                Platform(name=name, description=description, windows_download_url=windows_url, sort_order=order)
            )
    db.session.commit()
