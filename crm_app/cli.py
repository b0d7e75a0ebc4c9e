"""`flask create-admin`, `flask seed-demo`."""

import click
from flask.cli import with_appcontext


def register(app):
    from crm_app.integrations.trading.simulator.cli import mt_sim_command

    app.cli.add_command(create_admin_command)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(mt_sim_command)


@click.command("create-admin")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@with_appcontext
def create_admin_command(email, password, first_name, last_name):
    """Create an admin (the first one, or another)."""
    from crm_app.admin.services import create_user
    from crm_app.common.errors import DomainError

    try:
        user = create_user(
            {
                "email": email,
                "password": password,
                "user_type": "admin",
                "first_name": first_name,
                "last_name": last_name,
            },
            actor=None,
            client=None,
        )
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.errors}") from None
    click.echo(f"Admin {user.email} created (id {user.id}).")


@click.command("seed-demo")
@click.option(
    "--allow-production",
    is_flag=True,
    help="Load the demo data even with APP_ENV=production (its users then get generated passwords).",
)
@with_appcontext
def seed_demo_command(allow_production):
    """Load the demo broker configuration (safe to run again)."""
    from flask import current_app

    from crm_app.demo import seed_demo

    production = current_app.config["APP_ENV"] == "production"
    if production and not allow_production:
        raise click.ClickException(
            "Refusing to load demo data with APP_ENV=production: its users would have the published "
            "demo passwords. Pass --allow-production to load it with generated passwords."
        )
    summary = seed_demo(generate_passwords=production)
    for line in summary:
        click.echo(line)
