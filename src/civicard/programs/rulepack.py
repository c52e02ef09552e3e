"""Program rule files: loading, checking and identifying one version (see docs/rules.md)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml

from civicard.programs.expressions import FUNCTIONS, Expr, InvalidRule, Names, parse
from civicard.programs.inputs import Kind, Unit, rule_inputs

STATUSES = ("draft", "published", "retired")
UNITS: tuple[Unit, ...] = ("money", "integer", "number", "percent", "boolean")
_PROGRAM_ID = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
MAX_OFFLINE_CAP = 1_000  # the most one sale may hold of an item (distribution.sales.MAX_QUANTITY)
_ITEM_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_.-]{1,40}$")
Label = dict[str, str]


@dataclass(frozen=True)
class Parameter:
    name: str
    label: Label
    unit: Unit
    values: tuple[tuple[date, float], ...]  # ascending by date

    def on(self, day: date) -> float | None:
        """The value in force on `day` (None before the first date)."""
        current = None
        for since, value in self.values:
            if since <= day:
                current = value
        return current


@dataclass(frozen=True)
class Named:
    """A derived value or a condition: a label and a checked expression."""

    name: str
    label: Label
    unit: Unit
    expression: Expr
    source: str


@dataclass(frozen=True)
class ItemGrant:
    item: str
    quantity: Expr
    source: str


@dataclass(frozen=True)
class TestCase:
    name: str
    period: date
    household: dict[str, Any]
    members: tuple[dict[str, Any], ...]
    expect: dict[str, Any]


@dataclass(frozen=True)
class RulePack:
    program: str
    version: str
    title: Label
    status: Literal["draft", "published", "retired"]
    legal_basis: str
    effective_from: date
    parameters: dict[str, Parameter]
    derived: tuple[Named, ...]
    conditions: tuple[Named, ...]
    amount: Named
    items: tuple[ItemGrant, ...]
    tests: tuple[TestCase, ...]
    sha256: str
    path: Path | None = None
    # item → the most a terminal may hand one card offline per cycle when it holds no remaining
    # quantity for the card (see docs/rules.md, "Offline caps"); an item not listed: 0.
    offline_caps: dict[str, int] = field(default_factory=dict)

    def parameters_on(self, day: date) -> dict[str, float]:
        values = {}
        for name, parameter in self.parameters.items():
            value = parameter.on(day)
            if value is None:
                raise InvalidRule("parameter_not_in_force", f"parameter '{name}' has no value on {day}", self.program)
            values[name] = value
        return values


def canonical_hash(raw: dict[str, Any]) -> str:
    """SHA-256 of the parsed file as JSON with sorted keys and no spaces (dates as ISO text),
    leaving out `status`: a version's life (draft → published → retired) is not its content, and
    the register of published versions, not the file, says where it is in that life."""
    content = {k: v for k, v in raw.items() if k != "status"}
    text = json.dumps(_plain(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    """YAML's values as JSON's: dates (also as keys) become ISO text."""
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _key(key: Any) -> str:
    return key.isoformat() if isinstance(key, date) else str(key)


def load_rulepack(path: Path) -> RulePack:
    """Read and check one rule file; any problem raises InvalidRule naming the part."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRule("unreadable_file", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InvalidRule("invalid_yaml", f"{path.name} is not valid YAML: {str(exc).splitlines()[0]}") from None
    pack = rulepack_from_dict(raw, str(path.name))
    return RulePack(**{**pack.__dict__, "path": path})


def rulepack_from_dict(raw: Any, where: str = "rule file") -> RulePack:
    if not isinstance(raw, dict):
        raise InvalidRule("invalid_rule_file", "a rule file is a mapping of program, version, …", where)
    r = _Reader(raw, where)
    program = r.text("program")
    if not _PROGRAM_ID.match(program):
        raise InvalidRule("invalid_program_id", f"'{program}' is not a program id (a-z, 0-9, _)", where)
    status = r.text("status")
    if status not in STATUSES:
        raise InvalidRule("invalid_status", f"status must be one of {', '.join(STATUSES)}", where)
    if r.text("entity") != "household" or r.text("period") != "month":
        raise InvalidRule("unsupported_entity", "only entity: household and period: month are supported", where)
    parameters = {name: r.parameter(name, spec) for name, spec in r.mapping("parameters").items()}
    names = Names({p: _kind(v.unit) for p, v in parameters.items()}, {})
    derived = []
    for name, spec in r.mapping("derived").items():
        item = r.named(f"derived.{name}", name, spec, names, None)
        derived.append(item)
        names = Names(names.parameters, {**names.derived, name: _kind(item.unit)})
    conditions = tuple(
        r.named(f"conditions.{name}", name, spec, names, "boolean") for name, spec in r.mapping("conditions").items()
    )
    if not conditions:
        raise InvalidRule("no_conditions", "a program needs at least one condition", where)
    amount = r.named(
        "amount", "amount", {**r.mapping("amount"), "label": {"es": "Importe", "en": "Amount"}}, names, "number"
    )
    items = tuple(r.item(i, spec, names) for i, spec in enumerate(raw.get("items") or []))
    tests = tuple(r.test(i, spec) for i, spec in enumerate(raw.get("tests") or []))
    offline_caps = r.offline_caps({i.item for i in items})
    return RulePack(
        program=program,
        version=r.text("version"),
        title=r.label("title", raw.get("title")),
        status=status,  # type: ignore[arg-type]
        legal_basis=r.text("legal_basis"),
        effective_from=r.day("effective_from", raw.get("effective_from")),
        parameters=parameters,
        derived=tuple(derived),
        conditions=conditions,
        amount=amount,
        items=items,
        tests=tests,
        sha256=canonical_hash(raw),
        offline_caps=offline_caps,
    )


def _kind(unit: Unit) -> Kind:
    return "boolean" if unit == "boolean" else "number"


class _Reader:
    def __init__(self, raw: dict[str, Any], where: str) -> None:
        self.raw = raw
        self.where = where

    def fail(self, code: str, message: str, part: str) -> InvalidRule:
        return InvalidRule(code, message, f"{self.where} {part}")

    def text(self, key: str) -> str:
        value = self.raw.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise self.fail("missing_field", f"'{key}' is required", key)
        return str(value).strip()

    def mapping(self, key: str, named: bool = True) -> dict[str, Any]:
        """A section; with `named`, its keys are names rules use (a-z, 0-9, _), checked here."""
        value = self.raw.get(key) or {}
        if not isinstance(value, dict):
            raise self.fail("invalid_rule_file", f"'{key}' must be a mapping", key)
        inputs = rule_inputs()
        taken = {*inputs.household, *inputs.member, *inputs.aggregates, *FUNCTIONS}
        for name in value if named else ():
            if not isinstance(name, str) or not _NAME.match(name):
                raise self.fail(
                    "invalid_name",
                    f"'{name}' is not a name (lower-case letters, digits and _; quote yes/no/on/off)",
                    key,
                )
            if key in ("parameters", "derived") and name in taken:
                raise self.fail("name_taken", f"'{name}' is already an input or function; give it another name", key)
        return value

    def label(self, part: str, value: Any) -> Label:
        if not isinstance(value, dict) or not all(isinstance(value.get(k), str) and value[k] for k in ("es", "en")):
            raise self.fail("missing_label", "a label needs Spanish (es) and English (en) text", part)
        return {"es": value["es"], "en": value["en"]}

    def day(self, part: str, value: Any) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise self.fail("invalid_date", f"'{value}' is not a date (YYYY-MM-DD)", part) from None

    def unit(self, part: str, value: Any) -> Unit:
        if value not in UNITS:
            raise self.fail("invalid_unit", f"unit must be one of {', '.join(UNITS)}", part)
        return value  # type: ignore[no-any-return]

    def parameter(self, name: str, spec: Any) -> Parameter:
        part = f"parameters.{name}"
        if not isinstance(spec, dict) or not isinstance(spec.get("values"), dict) or not spec["values"]:
            raise self.fail("invalid_parameter", "a parameter needs a label, a unit and dated values", part)
        values = []
        for since, value in spec["values"].items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail("invalid_parameter", f"the value for {since} must be a number", part)
            values.append((self.day(part, since), float(value)))
        return Parameter(
            name, self.label(part, spec.get("label")), self.unit(part, spec.get("unit")), tuple(sorted(values))
        )

    def named(self, part: str, name: str, spec: Any, names: Names, want: Kind | None) -> Named:
        if not isinstance(spec, dict) or "expression" not in spec:
            raise self.fail("missing_expression", "needs a label and an expression", part)
        unit: Unit = "boolean" if want == "boolean" else self.unit(part, spec.get("unit", "number"))
        expression = parse(spec["expression"], names, f"{self.where} {part}", want or _kind(unit))
        return Named(name, self.label(part, spec.get("label")), unit, expression, str(spec["expression"]))

    def item(self, index: int, spec: Any, names: Names) -> ItemGrant:
        part = f"items[{index}]"
        if not isinstance(spec, dict) or not _ITEM_CODE.match(str(spec.get("item", ""))):
            raise self.fail("invalid_item", "an item needs an item code (A-Z, 0-9) and a quantity", part)
        quantity = parse(spec.get("quantity", 1), names, f"{self.where} {part}", "number")
        return ItemGrant(str(spec["item"]), quantity, str(spec.get("quantity", 1)))

    def offline_caps(self, granted: set[str]) -> dict[str, int]:
        """`offline_caps: {ITEM: n}`: items this program grants, whole numbers from 0 to MAX_OFFLINE_CAP."""
        caps: dict[str, int] = {}
        for item, cap in self.mapping("offline_caps", named=False).items():
            part = f"offline_caps.{item}"
            if item not in granted:
                raise self.fail("invalid_offline_cap", f"'{item}' is not an item this program grants", part)
            if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= MAX_OFFLINE_CAP:
                raise self.fail(
                    "invalid_offline_cap", f"an offline cap is a whole number from 0 to {MAX_OFFLINE_CAP}", part
                )
            caps[str(item)] = cap
        return caps

    def test(self, index: int, spec: Any) -> TestCase:
        part = f"tests[{index}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("expect"), dict):
            raise self.fail("invalid_test", "a test needs a name, a period, a household and expect", part)
        household = dict(spec.get("household") or {})
        members = tuple(dict(m) for m in household.pop("members", None) or [])
        period = str(spec.get("period", ""))
        return TestCase(str(spec.get("name", part)), self.day(part, f"{period}-01"), household, members, spec["expect"])
