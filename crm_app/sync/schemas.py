from marshmallow import fields, validate

from crm_app.common.schemas import BrokerTime, Schema, list_schema


class SyncRequestSchema(Schema):
    server_id = fields.Integer(
        allow_none=True,
        validate=validate.Range(min=1),
        metadata={"description": "交易服务器ID: one server; omitted, every enabled server"},
    )


class SyncJobSchema(Schema):
    server_id = fields.Integer(required=True)
    job_id = fields.String(
        allow_none=True, metadata={"description": "The RQ job; null when it ran in the web process (no Redis)"}
    )
    status = fields.String(
        metadata={"description": "queued, started, ...: an already queued or running job is answered, not doubled"}
    )


class SyncStateSchema(Schema):
    server_id = fields.Integer()
    server_name = fields.String()
    enabled = fields.Boolean()
    watermark = BrokerTime(
        allow_none=True, metadata={"description": "Server time up to which deals and order history are stored"}
    )
    running = fields.Boolean(metadata={"description": "A run holds the server's lease now"})
    lease_owner = fields.String(allow_none=True)
    lease_expires_at = BrokerTime(allow_none=True)
    last_status = fields.String(allow_none=True, metadata={"description": "running, succeeded or failed"})
    last_error = fields.String(
        allow_none=True, metadata={"description": "Why the last run failed (or what it skipped)"}
    )
    last_started_at = BrokerTime(allow_none=True)
    last_finished_at = BrokerTime(allow_none=True)
    last_succeeded_at = BrokerTime(allow_none=True)
    last_counts = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "What the last run read and wrote"}
    )
    runs = fields.Integer()


class SyncAnswerSchema(Schema):
    jobs = fields.List(fields.Nested(SyncJobSchema), required=True)
    servers = fields.List(fields.Nested(SyncStateSchema), required=True)


SyncStateListSchema = list_schema(SyncStateSchema, "SyncStateListSchema")
