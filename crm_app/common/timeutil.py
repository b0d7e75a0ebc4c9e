"""Times are stored as naive UTC (the same on PostgreSQL and SQLite)."""

from datetime import datetime, timezone


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def to_unix(moment):
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


def from_unix(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def format_wire(moment):
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else None
