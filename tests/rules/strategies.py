"""Hypothesis strategies for rule parity: random households, and random rule expressions as text.

Expressions are built as text, as an administrator would write them, so the parser is part of
what is tested. Every generated expression is well typed: a refusal by the parser is a failure.
Binary operations are always parenthesised and negative numbers written `(-2.5)`, because
`a - -2.5` would start an SQL comment.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from hypothesis import strategies as st

from civicard.programs.decisions import HouseholdFacts
from civicard.programs.evaluate import Value
from civicard.programs.inputs import rule_inputs

Scope = Literal["household", "member"]

# --- households -------------------------------------------------------------------------------

MONEY = st.one_of(
    st.just(0),
    st.integers(1, 60_000),
    st.sampled_from([7_000, 7_001, 20_000, 20_001, 35_000, 100_000]),
    st.integers(0, 10_000_000),
    st.integers(-50_000, -1),  # not in the registry, but nothing stops a fact being negative
)
DEGREES = st.one_of(st.sampled_from([0, 32, 33, 64, 65, 100]), st.integers(0, 100))
HOUSEHOLD_MONEY = ("household_income", "benefits_income", "property_value", "savings")


def _maybe_none(values: st.SearchStrategy[Value], none_weight: int) -> st.SearchStrategy[Value]:
    """`values`, or (about one in `none_weight`) a missing fact."""
    return st.tuples(st.integers(1, none_weight), values).map(lambda t: None if t[0] == 1 else t[1])


@st.composite
def members(draw: st.DrawFn) -> dict[str, Value]:
    """One member: age 0–100, an income, a disability degree, every yes/no input (chronic flags
    included) and, for about one member in four, one missing fact. Few draws per member: the yes/no
    inputs come from one bit mask, so a batch of households is quick to generate."""
    inputs = rule_inputs()
    flags = [name for name, field in inputs.member.items() if field.kind == "boolean"]
    mask = draw(st.integers(0, 2 ** len(flags) - 1))
    member: dict[str, Value] = {name: bool(mask >> bit & 1) for bit, name in enumerate(flags)}
    member["age"] = float(draw(st.integers(0, 100)))
    member["income"] = float(draw(MONEY))
    member["disability_degree"] = float(draw(DEGREES))
    assert set(member) == set(inputs.member), "inputs.yaml changed: update this strategy"
    may_be_missing = [name for name in member if name != "age"]  # age is always known
    missing = draw(st.integers(0, 4 * len(may_be_missing) - 1))
    if missing < len(may_be_missing):
        member[may_be_missing[missing]] = None
    return member


@st.composite
def households(draw: st.DrawFn, max_members: int = 9) -> HouseholdFacts:
    """0–9 members; household inputs consistent with them or not, money facts sometimes missing."""
    people = draw(st.lists(members(), max_size=max_members))
    summed = float(sum(m["income"] or 0 for m in people))
    values: dict[str, Value] = {
        "member_count": draw(st.one_of(st.just(float(len(people))), st.integers(0, 9).map(float))),
        "household_income": draw(_maybe_none(st.one_of(st.just(summed), MONEY.map(float)), 6)),
        "owns_dwelling": draw(st.booleans()),
        "owns_vehicle": draw(st.booleans()),
    }
    for name in HOUSEHOLD_MONEY[1:]:
        values[name] = draw(_maybe_none(MONEY.map(float), 6))
    assert set(values) == set(rule_inputs().household), "inputs.yaml changed: update this strategy"
    return HouseholdFacts(values, people)


# --- expressions ------------------------------------------------------------------------------

PARAMETERS: dict[str, tuple[str, dict[str, float]]] = {
    "limit": ("money", {"2026-01-01": 7_000, "2027-01-01": 7_500}),
    "half": ("number", {"2026-01-01": 0.5}),
    "minus_two_and_a_half": ("number", {"2026-01-01": -2.5}),
}
_UNSIGNED = ["0", "1", "2", "3", "10", "100", "7000", "0.5", "1.5", "2.5", "0.1", "0.2", "0.3", "1.005", "2.675", "1e3"]
LITERALS = [*_UNSIGNED, "(-0.5)", "(-1)", "(-2.5)", "(-3.5)", "null", "0.0", "(-0.0)"]
MEMBER_LITERALS = ["18", "65", "33", "0", "1", "2.5", "20000", "null"]
IN_VALUES = st.lists(st.sampled_from(["0", "1", "2", "2.5", "-2.5", "3", "7000", "65"]), min_size=1, max_size=4)
HOUSEHOLD_NUMBERS = ["member_count", *HOUSEHOLD_MONEY, "limit", "half", "minus_two_and_a_half"]
HOUSEHOLD_FLAGS = ["owns_dwelling", "owns_vehicle"]
MEMBER_NUMBERS = ["age", "income", "disability_degree", "half", "limit"]
MEMBER_FLAGS = ["employed", "student", "retired", "receives_pension", "chronic_illness", "chronic_e11"]
COMPARISONS = ["=", "<>", "<", "<=", ">", ">="]
LEAF_WEIGHT = 4
"""How many times more likely a leaf is than each composite form: keeps expressions readable."""


def _binary(left: st.SearchStrategy[str], ops: list[str], right: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(left, st.sampled_from(ops), right).map(lambda t: f"({t[0]} {t[1]} {t[2]})")


def _call(name: str, args: st.SearchStrategy[list[str]]) -> st.SearchStrategy[str]:
    return args.map(lambda a: f"{name}({', '.join(a)})")


@cache
def numbers(scope: Scope, depth: int, derived: bool = False) -> st.SearchStrategy[str]:
    """A number-valued expression; `derived` lets it name the derived values d_num and d_flag."""
    names = HOUSEHOLD_NUMBERS + (["d_num"] if derived else []) if scope == "household" else MEMBER_NUMBERS
    leaves = st.sampled_from(LITERALS if scope == "household" else MEMBER_LITERALS) | st.sampled_from(names)
    if depth == 0:
        return leaves
    sub = numbers(scope, depth - 1, derived)
    condition = conditions(scope, depth - 1, derived)
    options = [
        *[leaves] * LEAF_WEIGHT,
        _binary(sub, ["+", "-", "*", "/"], sub),
        _binary(sub, ["/"], st.sampled_from(["0", "(member_count - member_count)", "(-0.0)", "0.0"]))
        if scope == "household"
        else _binary(sub, ["/"], st.sampled_from(["0", "(age - age)"])),
        sub.map(lambda x: f"-({x})"),
        st.tuples(condition, sub, st.none() | sub).map(
            lambda t: (
                f"CASE WHEN {t[0]} THEN {t[1]} END" if t[2] is None else f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"
            )
        ),
        st.tuples(condition, condition, sub, sub, sub).map(
            lambda t: f"CASE WHEN {t[0]} THEN {t[2]} WHEN {t[1]} THEN {t[3]} ELSE {t[4]} END"
        ),
        st.tuples(condition, sub, sub).map(lambda t: f"IF({t[0]}, {t[1]}, {t[2]})"),
        *(_call(f, st.lists(sub, min_size=2, max_size=4)) for f in ("LEAST", "GREATEST", "COALESCE")),
        *(_call(f, st.lists(sub, min_size=1, max_size=1)) for f in ("ABS", "FLOOR", "CEIL", "ROUND")),
        st.tuples(sub, st.sampled_from(["0", "1", "2", "3"])).map(lambda t: f"ROUND({t[0]}, {t[1]})"),
    ]
    if scope == "household":
        member_depth = min(depth - 1, 1)
        options += [
            _call("count_members", st.lists(conditions("member", member_depth), min_size=1, max_size=1)),
            *(
                _call(f, st.lists(numbers("member", member_depth), min_size=1, max_size=1))
                for f in ("sum_members", "max_members", "min_members")
            ),
        ]
    return st.one_of(options)


@cache
def conditions(scope: Scope, depth: int, derived: bool = False) -> st.SearchStrategy[str]:
    """A yes/no expression (true, false or unknown)."""
    flags = HOUSEHOLD_FLAGS + (["d_flag"] if derived else []) if scope == "household" else MEMBER_FLAGS
    leaves = st.sampled_from(["true", "false", "(null = 0)", *flags])  # (null = 0) is unknown
    if depth == 0:
        return leaves
    number = numbers(scope, depth - 1, derived)
    sub = conditions(scope, depth - 1, derived)
    options = [
        *[leaves] * LEAF_WEIGHT,
        _binary(number, COMPARISONS, number),
        _binary(number, COMPARISONS, number),  # comparisons twice: they are most of real rules
        _binary(sub, ["AND", "OR"], sub),
        _binary(sub, ["AND", "OR", "=", "<>"], sub),
        sub.map(lambda c: f"NOT ({c})"),
        st.tuples(number | sub, st.sampled_from(["IS NULL", "IS NOT NULL"])).map(lambda t: f"({t[0]} {t[1]})"),
        st.tuples(number, st.sampled_from(["BETWEEN", "NOT BETWEEN"]), number, number).map(
            lambda t: f"({t[0]} {t[1]} {t[2]} AND {t[3]})"
        ),
        st.tuples(number, st.sampled_from(["IN", "NOT IN"]), IN_VALUES).map(
            lambda t: f"({t[0]} {t[1]} ({', '.join(t[2])}))"
        ),
        st.tuples(sub, sub).map(lambda t: f"CASE WHEN {t[0]} THEN {t[1]} END"),
        st.tuples(sub, sub, sub).map(lambda t: f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"),
    ]
    if scope == "household":
        member_depth = min(depth - 1, 1)
        options += [
            _call(f, st.lists(conditions("member", member_depth), min_size=1, max_size=1))
            for f in ("any_member", "all_members")
        ]
    return st.one_of(options)


def bounded(number: str) -> str:
    """A money expression whose whole units fit a BIGINT in every engine (huge values become -1)."""
    return f"CASE WHEN ABS({number}) >= 1e15 THEN -1 ELSE {number} END"
