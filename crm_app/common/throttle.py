"""Counters in fixed windows, for throttling logins, email codes and money routes.

Redis when configured (shared by every web process); otherwise an in-process
store, which is right for the single-process first run.
"""

import threading
import time


class MemoryCounterStore:
    def __init__(self):
        self._lock = threading.Lock()
        self._counters = {}

    def _live(self, key, now):
        entry = self._counters.get(key)
        if entry and entry[1] <= now:
            del self._counters[key]
            return None
        return entry

    def hit(self, key, window_seconds):
        now = time.monotonic()
        with self._lock:
            entry = self._live(key, now)
            if entry is None:
                entry = [0, now + window_seconds]
                self._counters[key] = entry
            entry[0] += 1
            return entry[0]

    def get(self, key):
        """(count, seconds until the window ends)."""
        now = time.monotonic()
        with self._lock:
            entry = self._live(key, now)
            if entry is None:
                return 0, 0
            return entry[0], max(1, int(entry[1] - now + 0.999))

    def reset(self, key):
        with self._lock:
            self._counters.pop(key, None)


class RedisCounterStore:
    def __init__(self, redis_client, prefix="crm:throttle:"):
        self.redis = redis_client
        self.prefix = prefix

    def hit(self, key, window_seconds):
        full_key = self.prefix + key
        pipe = self.redis.pipeline()
        pipe.incr(full_key)
        pipe.expire(full_key, window_seconds, nx=True)
        count, _ = pipe.execute()
        return int(count)

    def get(self, key):
        full_key = self.prefix + key
        pipe = self.redis.pipeline()
        pipe.get(full_key)
        pipe.ttl(full_key)
        count, ttl = pipe.execute()
        if count is None:
            return 0, 0
        return int(count), max(1, int(ttl))

    def reset(self, key):
        self.redis.delete(self.prefix + key)
