"""Who is calling, from where: handed from routes to services as plain values."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientInfo:
    ip: str | None = None
    user_agent: str | None = None
    language: str = "en"


def client_info_from_request():
    from flask import request

    from crm_app.common.i18n import current_language

    return ClientInfo(
        ip=request.remote_addr,
        user_agent=(request.user_agent.string or "")[:255] or None,
        language=current_language(),
    )
