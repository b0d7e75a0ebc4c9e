"""Shared marshmallow pieces: strict base schema, paging, money and time fields."""

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import marshmallow as ma
from marshmallow import fields, validate

# Primary keys and the columns that refer to them are PostgreSQL `integer`.
MAX_DB_ID = 2**31 - 1

# Numbers on the wire are ASCII digits: Python's int(), Decimal() and `\d` also read
# `١٠٠` and `１００` as 100, and int() reads " 1_0 " as 10.
ASCII_INTEGER = re.compile(r"-?[0-9]{1,19}")

# What a PostgreSQL `integer` column holds (ids, logins, sort orders).
DB_INTEGER = validate.Range(min=-MAX_DB_ID - 1, max=MAX_DB_ID)


class Schema(ma.Schema):
    """Unknown fields are an error (no mass assignment), in every location."""

    class Meta:
        unknown = ma.RAISE

    def on_bind_field(self, field_name, field_obj):
        """An id the database cannot hold (ids are 32-bit) is refused as input, not
        sent to PostgreSQL to fail there; the document shows the bounds. A field that
        bounds itself from below only (`Range(min=1)`) gets the upper bound too."""
        name = field_obj.data_key or field_name
        if (
            isinstance(field_obj, fields.Integer)
            and (name == "id" or name.endswith("_id"))
            and not any(isinstance(v, validate.Range) and v.max is not None for v in field_obj.validators)
        ):
            field_obj.validators = [*field_obj.validators, DB_INTEGER]

    @ma.pre_load
    def check_json_types(self, data, **kwargs):
        """Input has the types the document shows. marshmallow would turn 100.5 into 100
        anywhere, and in a JSON body 1 into true and "7" into 7; query strings and form
        fields arrive as text (not a plain dict) and keep their conversions, from ASCII
        digits only."""
        if not isinstance(data, Mapping):
            return data
        json_object = type(data) is dict
        errors = {}
        for name, field in self.load_fields.items():
            key = field.data_key or name
            value = data.get(key)
            if value is None:
                continue
            if isinstance(field, fields.Integer):
                fractional = isinstance(value, float) and not value.is_integer()
                wrong = fractional or (json_object and isinstance(value, bool | str))
                wrong = wrong or (isinstance(value, str) and not ASCII_INTEGER.fullmatch(value))
            elif isinstance(field, fields.Boolean):
                wrong = json_object and not isinstance(value, bool)
            else:
                wrong = False
            if wrong:
                errors[key] = [field.error_messages["invalid"]]
        if errors:
            raise ma.ValidationError(errors)
        return data


class EmptySchema(Schema):
    """The seed's `{ }` answer."""


class PageQuerySchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=200))


def list_schema(item_schema, name):
    """`{"list": [...], "total": N}` as the seed answers every list."""
    return type(
        name,
        (Schema,),
        {
            "list": fields.List(fields.Nested(item_schema), required=True),
            "total": fields.Integer(required=True),
        },
    )


WIRE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class BrokerTime(fields.Field):
    """`YYYY-MM-DD HH:MM:SS` in the broker's timezone on the wire; naive UTC in the code."""

    default_error_messages = {"invalid": "Not a valid time (YYYY-MM-DD HH:MM:SS, broker's timezone)."}

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        from crm_app.broker.services import broker_zone

        return value.replace(tzinfo=timezone.utc).astimezone(broker_zone()).strftime(WIRE_TIME_FORMAT)

    def _deserialize(self, value, attr, data, **kwargs):
        from crm_app.broker.services import broker_zone

        if not isinstance(value, str) or not re.fullmatch(WIRE_TIME_PATTERN, value):
            raise self.make_error("invalid")
        try:
            local = datetime.strptime(value, WIRE_TIME_FORMAT).replace(tzinfo=broker_zone())
        except ValueError as exc:
            raise self.make_error("invalid") from exc
        return local.astimezone(timezone.utc).replace(tzinfo=None)


DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Empty is no bound: a form's empty field, in a query string or an export's body.
TIME_FILTER_PATTERN = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9]{2})?)?$"
TIME_FILTER_FORMS = "YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, broker's timezone"


class TimeFilter(BrokerTime):
    """A bound of a time filter: `YYYY-MM-DD HH:MM:SS`, or a date alone, in the broker's
    timezone. A date starts a range at the start of that day and, with `end=True`, ends
    it at the end of that day (its last microsecond: ranges compare `<=`). Empty text is
    no bound (a form's empty field)."""

    default_error_messages = {"invalid": f"Not a valid time ({TIME_FILTER_FORMS})."}

    def __init__(self, *, end=False, label=None, **kwargs):
        self.end = end
        metadata = dict(kwargs.pop("metadata", None) or {})
        metadata.setdefault(
            "description",
            f"{label or ('To' if end else 'From')} ({TIME_FILTER_FORMS}); a date alone "
            f"is the {'end' if end else 'start'} of that day",
        )
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "":
            return None
        if not (isinstance(value, str) and re.fullmatch(DATE_PATTERN, value)):
            try:
                return super()._deserialize(value, attr, data, **kwargs)
            except OverflowError as exc:  # year 1 or 9999 shifted past what datetime holds
                raise self.make_error("invalid") from exc
        from crm_app.broker.services import broker_zone

        try:
            local = datetime.combine(date.fromisoformat(value), time.max if self.end else time.min)
            return local.replace(tzinfo=broker_zone()).astimezone(timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError) as exc:
            raise self.make_error("invalid") from exc


MONEY_PATTERN = r"^-?[0-9]{1,15}(\.[0-9]{1,8})?$"


class Money(fields.Field):
    """A decimal amount as a string on the wire ("1234.50"), Decimal in the code."""

    default_error_messages = {"invalid": 'Not a valid amount (a decimal string such as "100.00").'}

    def __init__(self, places=2, **kwargs):
        self.places = places
        super().__init__(**kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        # Half away from zero, as PostgreSQL's round() and the files do (format() rounds half even).
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return f"{number.quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_UP) + 0:.{self.places}f}"

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.make_error("invalid")
        text = str(value).strip()
        if not re.fullmatch(MONEY_PATTERN, text):
            raise self.make_error("invalid")
        try:
            return Decimal(text)
        except InvalidOperation as exc:
            raise self.make_error("invalid") from exc


WIRE_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"


def wire_time_properties(self, field, ret, **kwargs):
    """apispec renders a DateTime with a custom format as `format: null`: invalid OpenAPI."""
    if isinstance(field, TimeFilter):
        ret.pop("format", None)
        ret["pattern"] = TIME_FILTER_PATTERN
        ret.setdefault("example", "2024-01-31")
        return {}
    if isinstance(field, fields.DateTime | BrokerTime) and ret.get("type") == "string" and ret.get("format", 0) is None:
        del ret["format"]
        if ret.get("pattern") is None:
            ret["pattern"] = WIRE_TIME_PATTERN
        ret.setdefault("example", "2024-01-31 08:00:00")
    return {}


class Computed(fields.Function):
    """A value worked out at dump time, typed in the OpenAPI document.

    apispec cannot see what a function returns, so a bare `fields.Function` or
    `fields.Method` is documented as `{}`, a value of no type, and a client generated
    from the document gets `any`. Say the wire type here: `openapi_type` for a scalar,
    `nested` (a schema class) for an object, with `many=True` for a list of them.
    The value served is whatever `function` returns, unchanged.
    """

    def __init__(self, function, openapi_type="string", *, nested=None, many=False, **kwargs):
        super().__init__(function, **kwargs)
        self.openapi_type = openapi_type
        self.nested = nested
        self.many = many


def computed_properties(self, field, ret, **kwargs):
    """The OpenAPI type of a `Computed` field (a `$ref` to its schema for an object)."""
    if not isinstance(field, Computed):
        return {}
    if field.nested is None:
        return {"type": field.openapi_type}
    reference = self.resolve_nested_schema(field.nested)
    if field.many:
        return {"type": "array", "items": reference}
    # OpenAPI 3.0 ignores the siblings of a `$ref` (readOnly, nullable, description).
    return {"type": "object", "allOf": [reference]}


# A value a person typed into a form: text, a number, a yes/no, or the choices of a
# checkbox. OpenAPI 3.0 has no "any" type, so the document lists what it can be.
ANY_FORM_VALUE = {
    "anyOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "items": {"type": "string"}},
    ]
}


def register_field_types(api):
    """Tell apispec how our custom fields look, so the document stays valid."""
    api.register_field(Money, "string", "decimal")
    api.register_field(BrokerTime, "string", None)
    api.register_field(TimeFilter, "string", None)
    if getattr(api, "ma_plugin", None) is not None:
        api.ma_plugin.converter.add_attribute_function(wire_time_properties)
        api.ma_plugin.converter.add_attribute_function(computed_properties)


def i18n_text_field(**kwargs):
    """The seed's `{en, zh-CN, zh-TW}` objects."""
    return fields.Dict(
        keys=fields.String(validate=validate.OneOf(["en", "zh-CN", "zh-TW"])), values=fields.String(), **kwargs
    )
