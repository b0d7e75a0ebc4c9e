"""`flask mt-sim`: run the simulator on its own port with a threaded server."""

import click


@click.command("mt-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5005, show_default=True, type=int)
@click.option("--database-url", envvar="MT_SIM_DATABASE_URL", help="Default: a SQLite file under instance/.")
@click.option(
    "--config",
    "config_path",
    envvar="MT_SIM_CONFIG",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON server definitions (see simulator/config.py).",
)
@click.option("--session-idle-seconds", type=float, envvar="MT_SIM_SESSION_IDLE_SECONDS", help="Default: 180.")
def mt_sim_command(host, port, database_url, config_path, session_idle_seconds):
    """Run the MetaTrader simulator (MT5 Web API wire format, MT4 and MT5 servers)."""
    from werkzeug.serving import run_simple

    from crm_app.integrations.trading.simulator import create_simulator_app

    app = create_simulator_app(database_url, config_path=config_path, session_idle_seconds=session_idle_seconds)
    client = app.test_client()
    for server in client.get("/sim/servers").get_json()["servers"]:
        click.echo(
            f"{server['key']:>10}: {server['platform']} {server['kind']}  "
            f"http://{host}:{port}/{server['key']}  manager {server['manager_login']}"
        )
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
