"""A reader of the seed API document (`tests/seed/crm-saas-api.txt`).

The seed is a rendered OpenAPI page copied as text: for each of its 59 operations, in
order, an optional title (Chinese), a table of parameters (`| name required | type
Enum: "a" "b" Default: 1 description |`), for a body operation the request example,
then the response example. Examples are JSON with a `- ` before every member. The page
gives no methods or paths: `SEED_ROUTES` (the route table of the API contract) does.

Two rendering losses are repaired here, and only these:
- a row whose name was dropped (`object 银行转账信息 | |`, `required | object … |`)
  takes its name from the request example, whose keys are in the table's order;
- in a query table (no example) a nameless string row described as 邮箱 (email) is
  `email`, as #6 shows next to its example.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

SEED_FILE = Path(__file__).resolve().parent.parent / "seed" / "crm-saas-api.txt"

# number: (method, path, roles, the seed's title or None where the seed has none)
SEED_ROUTES = {
    1: ("POST", "/api/v1/auth/password", "any", "修改密码"),
    2: ("POST", "/api/v1/auth/login", "public", "登录"),
    3: ("GET", "/api/v1/auth/permissions", "any", None),
    4: ("GET", "/api/v1/menus", "any", None),
    5: ("POST", "/api/v1/captcha/verify", "public", "腾讯验证码验证"),
    6: ("POST", "/api/v1/auth/email-code", "public", "发送邮箱验证码"),
    7: ("GET", "/api/v1/config/login-page", "public", None),
    8: ("GET", "/api/v1/config/broker", "public", None),
    9: ("GET", "/api/v1/currencies", "public", "获取所有可用的货币"),
    10: ("POST", "/api/v1/reports/withdrawals/export", "client", "出金报表导出"),
    11: ("GET", "/api/v1/reports/withdrawals", "client", "出金报表"),
    12: ("GET", "/api/v1/client/permissions", "client", None),
    13: ("GET", "/api/v1/client/balances", "client", "查询所持账户的余额"),
    14: ("POST", "/api/v1/client/account-applications", "client", "创建开户申请"),
    15: ("POST", "/api/v1/client/transfers", "client", "创建转账申请"),
    16: ("GET", "/api/v1/client/transfers", "client", "查询转账历史列表"),
    17: ("POST", "/api/v1/client/kyc/e-verify/sessions", "client", "创建电子认证会话"),
    18: ("PUT", "/api/v1/client/kyc/questionnaire", "client", "保存Client用户问卷答案"),
    19: ("GET", "/api/v1/client/platforms", "client", None),
    20: ("GET", "/api/v1/client/deposit-channels", "client", "获取可用的入金渠道"),
    21: ("POST", "/api/v1/client/deposits", "client", "创建入金申请草稿"),
    22: ("POST", "/api/v1/client/deposits/submit", "client", "提交入金申请(支付确认)"),
    23: ("GET", "/api/v1/client/deposits", "client", "查询入金历史记录"),
    24: ("GET", "/api/v1/client/withdrawals", "client", "查询出金历史记录"),
    25: ("GET", "/api/v1/client/withdrawal-channels", "client", "获取可用的出金渠道"),
    26: ("POST", "/api/v1/client/withdrawals", "client", "创建出金申请"),
    27: ("GET", "/api/v1/client/kyc", "client", None),
    28: ("GET", "/api/v1/client/kyc/form", "client", None),
    29: ("POST", "/api/v1/auth/register", "public", "注册Client用户"),
    30: ("PUT", "/api/v1/client/kyc", "client", "保存Client用户身份信息"),
    31: ("POST", "/api/v1/client/payment-accounts", "client", "创建收款账户"),
    32: ("GET", "/api/v1/client/payment-accounts/{id}", "client", None),
    33: ("GET", "/api/v1/client/payment-accounts", "client", "获取收款账户列表"),
    34: ("PUT", "/api/v1/client/payment-accounts/{id}", "client", "更新收款账户"),
    35: ("POST", "/api/v1/reports/deposits/export", "client", "入金报表导出"),
    36: ("GET", "/api/v1/reports/deposits", "client", "入金报表"),
    37: ("POST", "/api/v1/reports/history-orders/export", "client", "导出历史订单报表"),
    38: ("GET", "/api/v1/reports/history-orders", "client", "查询历史订单报表"),
    39: ("POST", "/api/v1/reports/positions/export", "client", "导出持仓报表"),
    40: ("GET", "/api/v1/reports/positions", "client", "查询持仓报表"),
    41: ("POST", "/api/v1/reports/pending-orders/export", "client", "导出挂单报表"),
    42: ("GET", "/api/v1/reports/pending-orders", "client", "查询挂单报表"),
    43: ("POST", "/api/v1/reports/transfers/export", "client", "导出转账报表"),
    44: ("GET", "/api/v1/reports/transfers", "client", "查询转账报表"),
    45: ("POST", "/api/v1/client/trading-accounts", "client", "申请交易账号"),
    46: ("GET", "/api/v1/client/trading-accounts/{id}", "client", None),
    47: ("GET", "/api/v1/client/trading-account-types", "client", "查询可用交易账号类型列表"),
    48: ("GET", "/api/v1/client/trading-accounts", "client", "查询交易账号列表"),
    49: ("PUT", "/api/v1/client/trading-accounts/password", "client", "更新交易账号密码"),
    50: ("GET", "/api/v1/ib/kyc", "ib", None),
    51: ("GET", "/api/v1/ib/clients", "ib", "IB的Client列表"),
    52: ("GET", "/api/v1/ib/rebates", "ib", "ib查看返佣记录"),
    53: ("GET", "/api/v1/ib/platforms", "ib", None),
    54: ("GET", "/api/v1/ib/client-trading-accounts", "ib", "查询客户交易账户列表"),
    55: ("GET", "/api/v1/ib/profile", "ib", None),
    56: ("POST", "/api/v1/ib/commissions/details/export", "ib", "导出佣金明细报表"),
    57: ("GET", "/api/v1/ib/commissions/details", "ib", "查询佣金明细报表"),
    58: ("POST", "/api/v1/ib/commissions/export", "ib", "导出佣金报表"),
    59: ("GET", "/api/v1/ib/commissions", "ib", "查询佣金报表"),
}

BODY_METHODS = {"POST", "PUT", "PATCH"}
HEADER = ("Download OpenAPI specification:", "crm saas")
TYPE_WORDS = (
    ("Array of strings", "array", "string"),
    ("Array of integers", "array", "integer"),
    ("Array of objects", "array", "object"),
    ("string", "string", None),
    ("integer", "integer", None),
    ("number", "number", None),
    ("boolean", "boolean", None),
    ("object", "object", None),
)


@dataclass
class Param:
    """One row of an operation's parameter table."""

    name: str | None
    type: str
    items: str | None = None
    required: bool = False
    enum: tuple = ()
    default: object = None
    description: str = ""
    location: str = "query"  # query, body or header


@dataclass
class Operation:
    number: int
    method: str
    path: str
    roles: str
    title: str | None
    params: list = field(default_factory=list)
    request: object = None
    response: object = None

    @property
    def body_params(self):
        return [p for p in self.params if p.location == "body"]

    @property
    def query_params(self):
        return [p for p in self.params if p.location == "query"]


def example_to_json(text):
    """`{- "a": 1, - "b": [- {…}]}` → JSON: drop the `- ` before each member."""
    return json.loads(re.sub(r"(^|[\[{,])(\s*)- ", r"\1\2", text, flags=re.M))


def tokens(text):
    """('title', text), ('row', cells) and ('example', value), in document order."""
    position, out = 0, []
    while position < len(text):
        char = text[position]
        if char == "{":
            depth, quoted, start = 0, False, position
            while True:
                char = text[position]
                if quoted:
                    quoted = char != '"' or text[position - 1] == "\\"
                elif char == '"':
                    quoted = True
                elif char in "{[":
                    depth += 1
                elif char in "}]":
                    depth -= 1
                    if depth == 0:
                        break
                position += 1
            out.append(("example", example_to_json(text[start : position + 1])))
            position += 1
            continue
        end = text.find("\n", position)
        end = len(text) if end == -1 else end
        if "|" not in text[position:end]:  # a title runs up to its example; a row's text may hold braces
            brace = text.find("{", position, end)
            end = end if brace == -1 else brace
        line = text[position:end].strip()
        position = end + 1 if end < len(text) and text[end] == "\n" else end
        if not line:
            continue
        out.append(("row", line) if "|" in line else ("title", line))
    return out


def parse_row(line):
    cells = [cell.strip() for cell in line.split("|")]
    if line.startswith("|"):
        name_cell, type_cell = cells[1], cells[2]
    elif cells[0] == "required":  # the name was lost, the flag kept
        name_cell, type_cell = "required", cells[1]
    else:  # the whole name cell was lost
        name_cell, type_cell = "", cells[0]
    words = name_cell.split()
    required = bool(words) and words[-1] == "required"
    if required:
        words = words[:-1]
    name = words[0] if words else None
    found = next((entry for entry in TYPE_WORDS if type_cell.startswith(entry[0])), None)
    if found is None:
        raise ValueError(f"unknown type in seed row: {line!r}")
    prefix, kind, items = found
    rest = type_cell[len(prefix) :].strip()
    enum = ()
    match = re.search(r'(?:Enum|Value): ((?:"[^"]*"\s*)+)', rest)
    if match:
        enum = tuple(re.findall(r'"([^"]*)"', match.group(1)))
        rest = rest.replace(match.group(0), "")
    default = None
    match = re.search(r'Default: ("[^"]*"|\S+)', rest)
    if match:
        default = json.loads(match.group(1))
        rest = rest.replace(match.group(0), "")
    return Param(name, kind, items, required, enum, default, rest.strip())


def name_lost_rows(operation):
    """Give nameless rows their names back (see the module docstring)."""
    if operation.method in BODY_METHODS:
        keys = list(operation.request or {})
        rows = [p for p in operation.params if p.name is None or p.name in keys]
        assert len(rows) == len(keys), f"#{operation.number}: table and example disagree"
        for row, key in zip(rows, keys, strict=True):
            assert row.name in (None, key), f"#{operation.number}: row {row.name} where the example has {key}"
            row.name = key
            row.location = "body"
        for row in operation.params:
            if row.location != "body":
                row.location = "header"
    for row in operation.params:
        if row.name is None and row.type == "string" and row.description.startswith("邮箱"):
            row.name = "email"
        assert row.name, f"#{operation.number}: a row without a name: {row}"


def parse(text=None):
    """The seed's 59 operations, by number."""
    text = SEED_FILE.read_text(encoding="utf-8") if text is None else text
    for expected in HEADER:
        line, text = text.split("\n", 1)
        assert line.strip() == expected, f"unexpected seed header {line!r}"
    stream = tokens(text)
    operations = {}
    for number, (method, path, roles, title) in SEED_ROUTES.items():
        operation = Operation(number, method, path, roles, None)
        if stream and stream[0][0] == "title":
            operation.title = stream.pop(0)[1]
        while stream and stream[0][0] == "row":
            operation.params.append(parse_row(stream.pop(0)[1]))
        if method in BODY_METHODS:
            kind, operation.request = stream.pop(0)
            assert kind == "example", f"#{number}: no request example"
        kind, operation.response = stream.pop(0)
        assert kind == "example", f"#{number}: no response example"
        if title is None:
            assert operation.title is None, f"#{number}: unexpected title {operation.title!r}"
        else:
            assert operation.title and operation.title.startswith(title), f"#{number}: title {operation.title!r}"
        name_lost_rows(operation)
        operations[number] = operation
    assert not stream, f"seed text left over after #59: {stream[:2]}"
    return operations


def json_type(value):
    if value is None:
        return None  # `null` in an example: any value
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def example_fields(value, path=()):
    """(path, type) for every member of an example, nested ones included.

    A path step is a key, `[]` for a list's items, or `*` for the values of a map
    (the page writes a map's keys as `property1`, `property2`).
    """
    out = []
    if isinstance(value, dict):
        keys = list(value)
        if keys and all(re.fullmatch(r"property\d+", key) for key in keys):
            out.append(((*path, "*"), json_type(value[keys[0]])))
            out.extend(example_fields(value[keys[0]], (*path, "*")))
            return out
        for key, member in value.items():
            out.append(((*path, key), json_type(member)))
            out.extend(example_fields(member, (*path, key)))
    elif isinstance(value, list) and value:
        out.append(((*path, "[]"), json_type(value[0])))
        out.extend(example_fields(value[0], (*path, "[]")))
    return out
