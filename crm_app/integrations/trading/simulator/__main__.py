"""`python -m crm_app.integrations.trading.simulator --port 5005`, without the CRM app."""

from crm_app.integrations.trading.simulator.cli import mt_sim_command

if __name__ == "__main__":
    mt_sim_command()
