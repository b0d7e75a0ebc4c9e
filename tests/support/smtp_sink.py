"""A real SMTP server on loopback that keeps what it receives."""

import email
import socket
from email import policy

from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.sink.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "message": message})
        return "250 Message accepted for delivery"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpSink:
    def __init__(self):
        self.messages = []
        self.port = free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self):
        self._controller.start()

    def stop(self):
        self._controller.stop()

    def texts_to(self, address):
        return [
            m["message"].get_body(preferencelist=("plain",)).get_content()
            for m in self.messages
            if address.lower() in [t.lower() for t in m["to"]]
        ]
