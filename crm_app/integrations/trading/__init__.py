"""Trading servers: the `TradingGateway` protocol (gateway.py), its connectors, and the simulator."""

CONNECTORS = ("mt5_webapi",)


def make_gateway(connector, **settings):
    """The gateway for a trading server's connector.

    "mt5_webapi" takes MT5WebAPIGateway's settings: base_url, manager_login, manager_password,
    timezone (minutes, "+02:00", an IANA name, or None to ask the server), timeout, window_seconds.
    The simulator speaks the same wire format, so demo servers (MT4 ones included) use it too.
    """
    if connector == "mt5_webapi":
        from crm_app.integrations.trading.mt5_webapi import MT5WebAPIGateway

        return MT5WebAPIGateway(**settings)
    raise ValueError(f"unknown trading connector {connector!r} (known: {', '.join(CONNECTORS)})")
