"""A MetaTrader trade-server simulator speaking the MT5 Web API wire format.

It is a separate WSGI app (`create_simulator_app`), run by `flask mt-sim`, hosting several
servers (MT4 and MT5, live and demo) under `/<server_key>/api/...`, with its book in its
own database. The CRM talks to it through the real `mt5_webapi` adapter.
"""

from crm_app.integrations.trading.simulator.app import create_simulator_app

__all__ = ["create_simulator_app"]
