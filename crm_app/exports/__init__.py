"""Exports: report files built by a worker, fetched through a signed, expiring link."""
