"""Process-wide clients built once per app: Redis, throttle counters, file storage."""

from flask import current_app


class Runtime:
    def __init__(self, app):
        from crm_app.common.throttle import MemoryCounterStore, RedisCounterStore
        from crm_app.integrations.storage import storage_from_config

        self.redis = None
        if app.config.get("REDIS_URL"):
            import redis

            self.redis = redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=3)
            self.counters = RedisCounterStore(self.redis)
        else:
            self.counters = MemoryCounterStore()
        self.storage = storage_from_config(app.config)


def runtime():
    return current_app.extensions["crm_runtime"]
