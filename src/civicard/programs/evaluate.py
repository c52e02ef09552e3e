"""The per-household evaluator: SQL's meaning, in Python, with the values behind each result.

Three-valued logic as in SQL (a condition on a missing fact is unknown, and unknown is never
eligible); every number is an IEEE double, as in the compiled SQL, so both evaluators give the
same cents.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from civicard.programs.expressions import (
    Agg,
    Arith,
    Between,
    Bool,
    Case,
    Compare,
    Expr,
    Func,
    InList,
    IsNull,
    Logic,
    Neg,
    Not,
    Null,
    Num,
    Ref,
)

Value = float | bool | None


@dataclass
class Env:
    """What one household's expressions can see."""

    household: Mapping[str, Value]
    members: Sequence[Mapping[str, Value]]
    parameters: Mapping[str, float]
    derived: dict[str, Value] = field(default_factory=dict)
    member: Mapping[str, Value] | None = None  # the member an aggregate is looking at


def evaluate(e: Expr, env: Env) -> Value:
    match e:
        case Num(value=v):
            return v
        case Bool(value=v):
            return v
        case Null():
            return None
        case Ref():
            return _ref(e, env)
        case Neg(operand=x):
            value = _num(evaluate(x, env))
            return None if value is None else -value
        case Arith():
            return _arith(e.op, _num(evaluate(e.left, env)), _num(evaluate(e.right, env)))
        case Compare():
            return _compare(e.op, evaluate(e.left, env), evaluate(e.right, env))
        case Logic(op="and"):
            return kleene_and([_bool(evaluate(e.left, env)), _bool(evaluate(e.right, env))])
        case Logic(op="or"):
            return kleene_or([_bool(evaluate(e.left, env)), _bool(evaluate(e.right, env))])
        case Not(operand=x):
            value = _bool(evaluate(x, env))
            return None if value is None else not value
        case IsNull(operand=x):
            return evaluate(x, env) is None
        case Between():
            value, low, high = (_num(evaluate(v, env)) for v in (e.operand, e.low, e.high))
            return kleene_and([_compare(">=", value, low), _compare("<=", value, high)])
        case InList():
            member = _num(evaluate(e.operand, env))
            return None if member is None else member in e.values
        case Case():
            for condition, then in e.whens:
                if _bool(evaluate(condition, env)) is True:
                    return evaluate(then, env)
            return evaluate(e.default, env)
        case Func():
            return _function(e.name, [_num(evaluate(a, env)) for a in e.args])
        case Agg():
            return _aggregate(e, env)
    raise TypeError(e)


def kleene_and(values: Sequence[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def kleene_or(values: Sequence[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def round_half_away(x: float | None, digits: int = 0) -> float | None:
    """The one rounding rule: half away from zero (money to whole minor units, quantities to units)."""
    if x is None:
        return None
    scale = 10.0**digits
    return math.copysign(math.floor(abs(x) * scale + 0.5), x) / scale


def _ref(e: Ref, env: Env) -> Value:
    if e.source == "parameter":
        return env.parameters[e.name]
    if e.source == "derived":
        return env.derived[e.name]
    if e.source == "member":
        if env.member is None:
            raise RuntimeError(f"member input {e.name} outside an aggregate")
        return _typed(env.member.get(e.name), e.kind == "boolean")
    return _typed(env.household.get(e.name), e.kind == "boolean")


def _typed(value: Value, boolean: bool) -> Value:
    if value is None:
        return None
    return bool(value) if boolean else float(value)


def _num(value: Value) -> float | None:
    return None if value is None else float(value)


def _bool(value: Value) -> bool | None:
    return None if value is None else bool(value)


def _arith(op: str, left: float | None, right: float | None) -> float | None:
    if left is None or right is None:
        return None
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    return None if right == 0 else left / right  # division by zero is NULL in every engine


def _compare(op: str, left: Value, right: Value) -> bool | None:
    if left is None or right is None:
        return None
    if op == "=":
        return left == right
    if op == "<>":
        return left != right
    a, b = float(left), float(right)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _function(name: str, args: list[float | None]) -> float | None:
    present = [a for a in args if a is not None]
    if name == "coalesce":
        return present[0] if present else None
    if name == "least":
        return min(present) if present else None
    if name == "greatest":
        return max(present) if present else None
    x = args[0]
    if x is None:
        return None
    if name == "abs":
        return abs(x)
    if name == "floor":
        return float(math.floor(x))
    if name == "ceil":
        return float(math.ceil(x))
    digits = args[1] if len(args) > 1 else 0.0
    return None if digits is None else round_half_away(x, int(digits))


def _aggregate(e: Agg, env: Env) -> Value:
    values = [evaluate(e.arg, Env(env.household, env.members, env.parameters, env.derived, m)) for m in env.members]
    if e.name == "count_members":
        return float(sum(1 for v in values if v is True))
    if e.name == "any_member":
        return any(v is True for v in values)
    if e.name == "all_members":
        return all(v is True for v in values)
    numbers = [float(v) for v in values if v is not None]
    if e.name == "sum_members":
        return float(sum(numbers))
    if e.name == "max_members":
        return max(numbers) if numbers else None
    return min(numbers) if numbers else None
