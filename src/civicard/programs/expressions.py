"""The rule expression language: a small SQL subset, parsed by sqlglot, checked, typed, as a tree.

sqlglot is a parser, not a sandbox: a second statement, a subquery, UNION or a file-reading
function all parse. So the parsed tree is rebuilt node by node from an allow-list into this
module's own small tree (`Expr`); anything not on the list is refused with a message an
administrator can act on. Both evaluators (evaluate.py, sql.py) work from that tree only.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from civicard.programs.inputs import Kind, rule_inputs
from civicard.registry.forbidden import forbidden_concept
from civicard.shared.errors import InvalidInput

DIALECT = "duckdb"
"""Rules are parsed as DuckDB SQL, whatever engine later runs them."""

Scope = Literal["household", "member"]
MAX_NUMBER = 1e15
"""Largest literal a rule may write (money in minor units stays exact in a double below 2**53)."""
MAX_ROUND_DIGITS = 6
FUNCTIONS = ("coalesce", "least", "greatest", "abs", "round", "floor", "ceil")


class InvalidRule(InvalidInput):
    """A rule expression or file that cannot be accepted; `where` says which part."""

    def __init__(self, code: str, message: str, where: str = "") -> None:
        super().__init__(code, f"{where}: {message}" if where else message)
        self.where = where


# --- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Bool:
    value: bool


@dataclass(frozen=True)
class Null:
    kind: Kind = "number"


@dataclass(frozen=True)
class Ref:
    """A name: a household or member input, a parameter, or a derived value."""

    name: str
    source: Literal["household", "member", "parameter", "derived"]
    kind: Kind


@dataclass(frozen=True)
class Neg:
    operand: Expr


@dataclass(frozen=True)
class Arith:
    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Compare:
    op: Literal["=", "<>", "<", "<=", ">", ">="]
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Logic:
    op: Literal["and", "or"]
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class IsNull:
    operand: Expr
    negated: bool


@dataclass(frozen=True)
class Between:
    operand: Expr
    low: Expr
    high: Expr
    negated: bool


@dataclass(frozen=True)
class InList:
    operand: Expr
    values: tuple[float, ...]
    negated: bool


@dataclass(frozen=True)
class Case:
    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr


@dataclass(frozen=True)
class Func:
    name: str  # one of FUNCTIONS
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Agg:
    name: str  # a member aggregate from inputs.yaml
    arg: Expr


Expr = Num | Bool | Null | Ref | Neg | Arith | Compare | Logic | Not | IsNull | Between | InList | Case | Func | Agg


@dataclass(frozen=True)
class Names:
    """What a rule file lets its expressions name, besides the inputs."""

    parameters: Mapping[str, Kind]
    derived: Mapping[str, Kind]


# --- parsing and checking ---------------------------------------------------------------------


def parse(text: str | int | float | bool, names: Names, where: str, want: Kind | None = None) -> Expr:
    """Parse and check one expression; `want` is the kind it must have (conditions: boolean)."""
    source = str(text).lower() if isinstance(text, bool) else str(text)
    if not source.strip():
        raise InvalidRule("empty_expression", "the expression is empty", where)
    try:
        statements = sqlglot.parse(source, read=DIALECT)
    except (ParseError, TokenError) as exc:
        raise InvalidRule("syntax_error", f"cannot read the expression ({_first_line(exc)})", where) from None
    found: list[exp.Expression] = [s for s in statements if isinstance(s, exp.Expression)]
    if len(found) != 1:
        raise InvalidRule("multiple_statements", "only one expression is allowed (found a second statement)", where)
    tree = _Builder(names, where, source).build(found[0], "household")
    kind = kind_of(tree)
    if want is not None and kind != want:
        expected = "a yes/no condition" if want == "boolean" else "a number"
        raise InvalidRule("wrong_type", f"must be {expected}, but '{source.strip()}' is a {kind}", where)
    return tree


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


_ARITH: dict[type[exp.Expression], Literal["+", "-", "*", "/"]] = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
}
_COMPARE: dict[type[exp.Expression], Literal["=", "<>", "<", "<=", ">", ">="]] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_FUNCTION_NODES: dict[type[exp.Expression], str] = {
    exp.Coalesce: "coalesce",
    exp.Least: "least",
    exp.Greatest: "greatest",
    exp.Abs: "abs",
    exp.Round: "round",
    exp.Floor: "floor",
    exp.Ceil: "ceil",
}


def _l(node: exp.Expression) -> exp.Expression:
    left: exp.Expression = node.args["this"]
    return left


def _r(node: exp.Expression) -> exp.Expression:
    right: exp.Expression = node.args["expression"]
    return right


class _Builder:
    def __init__(self, names: Names, where: str, source: str) -> None:
        self.names = names
        self.where = where
        self.source = source
        self.inputs = rule_inputs()

    def fail(self, code: str, message: str, token: str | None = None) -> InvalidRule:
        """The refusal, with the character position of `token` in the expression when found."""
        at = self.source.lower().find(token.lower()) if token else -1
        position = f" (at character {at + 1} of '{self.source.strip()}')" if at >= 0 else ""
        return InvalidRule(code, message + position, self.where)

    def build(self, node: exp.Expression, scope: Scope) -> Expr:
        handler = self._handlers().get(type(node))
        if handler is not None:
            return handler(node, scope)
        return self._refuse(node)

    def _handlers(self) -> dict[type[exp.Expression], Callable[[exp.Expression, Scope], Expr]]:
        table: dict[type[exp.Expression], Callable[[exp.Expression, Scope], Expr]] = {
            exp.Literal: self._literal,
            exp.Boolean: lambda n, _s: Bool(bool(n.this)),
            exp.Null: lambda _n, _s: Null(),
            exp.Column: self._column,
            exp.Paren: lambda n, s: self.build(n.this, s),
            exp.Neg: lambda n, s: Neg(self._number(n.this, s, "-")),
            exp.Not: lambda n, s: Not(self._boolean(n.this, s, "NOT")),
            exp.And: lambda n, s: Logic("and", self._boolean(_l(n), s, "AND"), self._boolean(_r(n), s, "AND")),
            exp.Or: lambda n, s: Logic("or", self._boolean(_l(n), s, "OR"), self._boolean(_r(n), s, "OR")),
            exp.Is: self._is,
            exp.Between: self._between,
            exp.In: self._in,
            exp.Case: self._case,
            exp.If: self._if,
            exp.Anonymous: self._aggregate,
        }
        for node_type, op in _ARITH.items():
            table[node_type] = lambda n, s, op=op: Arith(op, self._number(_l(n), s, op), self._number(_r(n), s, op))  # type: ignore[misc]
        for node_type, cmp in _COMPARE.items():
            table[node_type] = lambda n, s, cmp=cmp: self._compare(cmp, n, s)  # type: ignore[misc]
        for node_type, name in _FUNCTION_NODES.items():
            table[node_type] = lambda n, s, name=name: self._function(name, n, s)  # type: ignore[misc]
        return table

    def _refuse(self, node: exp.Expression) -> Expr:
        if isinstance(node, exp.Select | exp.Subquery | exp.Union | exp.Exists) or node.find(exp.Select):
            raise self.fail(
                "subquery_not_allowed", "a rule cannot contain a query (SELECT, subquery or UNION)", "select"
            )
        if isinstance(node, exp.Func):
            name = node.sql_name().lower() if not isinstance(node, exp.Anonymous) else str(node.this).lower()
            allowed = ", ".join([*FUNCTIONS, *self.inputs.aggregates])
            raise self.fail(
                "function_not_allowed", f"the function {name.upper()} is not allowed (allowed: {allowed})", name
            )
        raise self.fail("not_allowed", f"'{node.sql(DIALECT)}' is not allowed in a rule")

    def _literal(self, node: exp.Expression, _scope: Scope) -> Expr:
        if node.is_string:
            raise self.fail("text_not_allowed", f"text values such as '{node.this}' are not allowed; use numbers")
        try:
            value = float(node.this)
        except ValueError:
            raise self.fail("syntax_error", f"'{node.this}' is not a number") from None
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            raise self.fail("number_out_of_range", f"{node.this} is too large (at most {MAX_NUMBER:g})", str(node.this))
        return Num(value)

    def _column(self, node: exp.Expression, scope: Scope) -> Expr:
        if not isinstance(node, exp.Column) or node.table:
            raise self.fail("not_allowed", f"'{node.sql(DIALECT)}' is not a plain name")
        name = str(node.name)
        key = name.lower()
        if key in self.names.parameters:
            return Ref(key, "parameter", self.names.parameters[key])
        if scope == "member":
            if key in self.inputs.member:
                return Ref(key, "member", self.inputs.member[key].kind)
            if key in self.inputs.household or key in self.names.derived:
                raise self.fail(
                    "household_value_in_member_aggregate",
                    f"'{name}' is a household value; inside a member aggregate only member inputs and parameters",
                )
        else:
            if key in self.names.derived:
                return Ref(key, "derived", self.names.derived[key])
            if key in self.inputs.household:
                return Ref(key, "household", self.inputs.household[key].kind)
            if key in self.inputs.member:
                raise self.fail(
                    "member_input_outside_aggregate",
                    f"'{name}' is a member input; use it inside a member aggregate, e.g. any_member({name} …)",
                )
        forbidden = forbidden_concept(key)
        if forbidden:
            raise self.fail("forbidden_field", f"'{name}' is forbidden: civicard never holds or uses {forbidden}", name)
        known = [*self.names.parameters, *self.names.derived]
        known += list(self.inputs.member if scope == "member" else self.inputs.household)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise self.fail("unknown_field", f"unknown name '{name}'{hint}", name)

    def _number(self, node: exp.Expression, scope: Scope, context: str) -> Expr:
        built = self.build(node, scope)
        if kind_of(built) != "number":
            raise self.fail("wrong_type", f"{context} needs numbers, but '{node.sql(DIALECT)}' is yes/no")
        return built

    def _boolean(self, node: exp.Expression, scope: Scope, context: str) -> Expr:
        built = self.build(node, scope)
        if kind_of(built) != "boolean":
            raise self.fail("wrong_type", f"{context} needs yes/no conditions, but '{node.sql(DIALECT)}' is a number")
        return built

    def _compare(self, op: Literal["=", "<>", "<", "<=", ">", ">="], node: exp.Expression, scope: Scope) -> Expr:
        left, right = self.build(_l(node), scope), self.build(_r(node), scope)
        if op in ("=", "<>") and kind_of(left) == kind_of(right):
            return Compare(op, left, right)
        if kind_of(left) != "number" or kind_of(right) != "number":
            raise self.fail("wrong_type", f"'{node.sql(DIALECT)}' compares a yes/no value with a number")
        return Compare(op, left, right)

    def _is(self, node: exp.Expression, scope: Scope) -> Expr:
        if not isinstance(node.expression, exp.Null):
            raise self.fail("not_allowed", "only IS NULL and IS NOT NULL are allowed")
        return IsNull(self.build(node.this, scope), negated=False)

    def _between(self, node: exp.Expression, scope: Scope) -> Expr:
        return Between(
            self._number(node.this, scope, "BETWEEN"),
            self._number(node.args["low"], scope, "BETWEEN"),
            self._number(node.args["high"], scope, "BETWEEN"),
            negated=False,
        )

    def _in(self, node: exp.Expression, scope: Scope) -> Expr:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise self.fail("subquery_not_allowed", "IN takes a list of numbers, not a query")
        values = []
        for item in node.expressions:
            value = self.build(item, scope)
            if isinstance(value, Neg) and isinstance(value.operand, Num):
                value = Num(-value.operand.value)
            if not isinstance(value, Num):
                raise self.fail("not_allowed", "IN takes a list of numbers only")
            values.append(value.value)
        return InList(self._number(node.this, scope, "IN"), tuple(values), negated=False)

    def _case(self, node: exp.Expression, scope: Scope) -> Expr:
        if node.this is not None:
            raise self.fail("not_allowed", "write CASE WHEN condition THEN … (not CASE value WHEN …)")
        whens = []
        for branch in node.args.get("ifs") or []:
            whens.append((self._boolean(branch.this, scope, "WHEN"), self.build(branch.args["true"], scope)))
        default_node = node.args.get("default")
        default = self.build(default_node, scope) if default_node is not None else Null(kind_of(whens[0][1]))
        return _checked_case(tuple(whens), default, self.fail)

    def _if(self, node: exp.Expression, scope: Scope) -> Expr:
        then = self.build(node.args["true"], scope)
        otherwise = node.args.get("false")
        default = self.build(otherwise, scope) if otherwise is not None else Null(kind_of(then))
        return _checked_case(((self._boolean(node.this, scope, "IF"), then),), default, self.fail)

    def _function(self, name: str, node: exp.Expression, scope: Scope) -> Expr:
        if name in ("coalesce", "least", "greatest"):
            args = [node.this, *node.expressions]
        elif name == "round":
            args = [node.this] + ([node.args["decimals"]] if node.args.get("decimals") is not None else [])
        else:
            args = [node.this]
            if node.args.get("decimals") is not None or node.args.get("to") is not None:
                raise self.fail("not_allowed", f"{name.upper()} takes one number")
        built = tuple(self._number(a, scope, name.upper()) for a in args if a is not None)
        if name == "round" and len(built) == 2:
            digits = built[1]
            if not isinstance(digits, Num) or digits.value not in range(0, MAX_ROUND_DIGITS + 1):
                raise self.fail(
                    "invalid_round_digits", f"ROUND's digits must be a whole number from 0 to {MAX_ROUND_DIGITS}"
                )
        return Func(name, built)

    def _aggregate(self, node: exp.Expression, scope: Scope) -> Expr:
        name = str(node.this).lower()
        spec = self.inputs.aggregates.get(name)
        if spec is None:
            return self._refuse(node)
        if scope == "member":
            raise self.fail("nested_aggregate", f"{name} cannot be used inside another member aggregate")
        if len(node.expressions) != 1:
            raise self.fail("wrong_arguments", f"{name} takes exactly one argument")
        if spec.argument == "condition":
            return Agg(name, self._boolean(node.expressions[0], "member", name))
        return Agg(name, self._number(node.expressions[0], "member", name))


def _checked_case(whens: tuple[tuple[Expr, Expr], ...], default: Expr, fail: Callable[[str, str], InvalidRule]) -> Case:
    kinds = {kind_of(then) for _, then in whens} | {kind_of(default)}
    if len(kinds) != 1:
        raise fail("wrong_type", "every branch of CASE must give the same kind of value (all numbers or all yes/no)")
    return Case(whens, default)


# --- types ------------------------------------------------------------------------------------


def kind_of(e: Expr) -> Kind:
    match e:
        case Num() | Neg() | Arith() | Func():
            return "number"
        case Bool() | Compare() | Logic() | Not() | IsNull() | Between() | InList():
            return "boolean"
        case Null(kind=kind):
            return kind
        case Ref(kind=kind):
            return kind
        case Case(default=default):
            return kind_of(default)
        case Agg(name=name):
            return "boolean" if rule_inputs().aggregates[name].result == "boolean" else "number"
    raise TypeError(e)
