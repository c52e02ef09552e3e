"""Compiling rule packs to Polars expressions: the bulk evaluator without a database.

The same rule tree as sql.py, the same meaning and the same output: `frame_decisions` gives the
columns of `decisions_query` (household_id, then per program its conditions, status, amount and
items), with the same values. Member aggregates are one group-by over the members; when the
members come clustered by household in the households' order (as an export ordered by
household writes them) and every household has members, the group-by is done by finding where
each household's run starts instead of hashing every member's household_id (household_id is
the households' key: unique). Numbers are Float64, yes/no Boolean; `a / b`
is NULL when b is 0, AND/OR/NOT are three-valued (Polars's Kleene logic), LEAST/GREATEST ignore
NULLs and rounding is half away from zero, as in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

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
from civicard.programs.inputs import rule_inputs
from civicard.programs.rulepack import RulePack
from civicard.programs.sql import output_columns

_ID = "household_id"


def frame_decisions(packs: Sequence[RulePack], period: date, households: pa.Table, members: pa.Table) -> pa.Table:
    """Decide every household under every pack; one row per household, in the households' order.

    `households` holds household_id and the household inputs, `members` household_id and the
    member inputs (other columns are ignored; numbers and yes/no are cast to Float64/Boolean)."""
    inputs = rule_inputs()
    h = pl.from_arrow(households.select([_ID, *inputs.household]))
    assert isinstance(h, pl.DataFrame)
    h = h.with_columns(_canonical(inputs.household))
    aggregates = _Aggregates()
    steps: list[list[pl.Expr]] = []  # derived values, then conditions, then eligibility: columns
    condition_step: list[pl.Expr] = []
    eligible_step: list[pl.Expr] = []
    outputs: list[pl.Expr] = [pl.col(_ID)]
    columns = iter(output_columns(packs))
    for pack in packs:
        compiler = _Compiler(pack.program, pack.parameters_on(period), aggregates)
        for derived in pack.derived:  # each in its own step: it may name the earlier ones
            steps.append([compiler.household(derived.expression).alias(compiler.derived_column(derived.name))])
        names = [next(columns).name for _ in pack.conditions]
        condition_step += [
            compiler.household(c.expression).alias(n) for c, n in zip(pack.conditions, names, strict=True)
        ]
        eligible = f"__{pack.program}__eligible"
        eligible_step.append(pl.all_horizontal(names).alias(eligible))  # Kleene AND, as SQL's
        all_met = pl.col(eligible)
        outputs += [pl.col(n) for n in names]
        status = pl.when(all_met).then(pl.lit("eligible")).when(~all_met).then(pl.lit("not_eligible"))
        outputs.append(status.otherwise(pl.lit("unknown")).alias(next(columns).name))
        for value in (pack.amount.expression, *(grant.quantity for grant in pack.items)):
            whole = _whole(compiler.household(value))
            outputs.append(pl.when(all_met).then(whole).otherwise(pl.lit(0, pl.Int64)).alias(next(columns).name))
    frame = h.lazy()
    if aggregates.columns:
        frame = _with_member_aggregates(h, members, aggregates).lazy().with_columns(aggregates.fills())
    for step in [*steps, condition_step, eligible_step]:
        frame = frame.with_columns(step)
    return frame.select(outputs).collect().to_arrow()


def _canonical(fields: Iterable[str]) -> list[pl.Expr]:
    inputs = {**rule_inputs().household, **rule_inputs().member}
    return [pl.col(name).cast(pl.Boolean if inputs[name].kind == "boolean" else pl.Float64) for name in fields]


@dataclass
class _Aggregates:
    """The member aggregates of every pack of a run: one column each, shared where they are equal."""

    columns: dict[tuple[object, ...], tuple[str, pl.Expr, str, pl.Expr]] = field(default_factory=dict)
    """key → (column name, the per-member value, how it is aggregated, value for no members)."""

    def column(self, key: tuple[object, ...], value: pl.Expr, how: str, empty: pl.Expr) -> str:
        if key not in self.columns:
            self.columns[key] = (f"__agg_{len(self.columns)}", value, how, empty)
        return self.columns[key][0]

    def per_member(self) -> list[pl.Expr]:
        return [value.alias(name) for name, value, _, _ in self.columns.values()]

    def aggregations(self) -> list[pl.Expr]:
        return [_aggregation(pl.col(name), how).alias(name) for name, _, how, _ in self.columns.values()]

    def fills(self) -> list[pl.Expr]:
        return [pl.col(name).fill_null(empty) for name, _, _, empty in self.columns.values()]


def _with_member_aggregates(h: pl.DataFrame, members: pa.Table, aggregates: _Aggregates) -> pl.DataFrame:
    """`h` with one column per member aggregate (NULL for a household without members)."""
    inputs = rule_inputs()
    m = pl.from_arrow(members.select([_ID, *inputs.member]))
    assert isinstance(m, pl.DataFrame)
    m = m.with_columns(_canonical(inputs.member))
    starts = _run_starts(households_ids=h.get_column(_ID).to_arrow(), member_ids=members.column(_ID))
    if starts is None:
        grouped = m.lazy().select(pl.col(_ID), *aggregates.per_member()).group_by(_ID).agg(aggregates.aggregations())
        return h.join(grouped.collect(), on=_ID, how="left", maintain_order="left")
    # Clustered in the households' order: no hashing of household_id. A count is the difference of
    # a running total at the runs' ends (exact: whole numbers); sums, maxima and minima of numbers
    # are one numpy reduction over the runs (sequential, as the Python evaluator adds). Polars's
    # group-by costs ~0.2 µs per group and aggregate here, its gather of the ends as much.
    values = m.select(aggregates.per_member())
    ends = np.append(starts[1:], m.height)
    columns = []
    for name, _, how, _ in aggregates.columns.values():
        column = values.get_column(name)
        if how in ("count", "any", "all"):
            running = np.concatenate([[0], np.cumsum(column.to_numpy(), dtype=np.int64)])
            met = running[ends] - running[starts]
            kind = pl.Float64 if how == "count" else pl.Boolean
            found = met if how == "count" else met > 0 if how == "any" else met == ends - starts
            columns.append(pl.Series(name, found, kind))
        else:
            columns.append(_reduce_runs(column, how, starts))
    return h.hstack(columns)


def _aggregation(column: pl.Expr, how: str) -> pl.Expr:
    if how == "count":  # of members meeting a condition (NULL already counted as not met)
        return column.cast(pl.Float64).sum()
    return getattr(column, how)()  # type: ignore[no-any-return]


def _run_starts(households_ids: pa.ChunkedArray | pa.Array, member_ids: pa.ChunkedArray) -> np.ndarray | None:
    """Where each household's members start, when every household has members and they come in
    runs in the households' order; otherwise None (and the group-by hashes household_id)."""
    if len(member_ids) == 0 or len(households_ids) == 0 or member_ids.null_count or households_ids.null_count:
        return None
    changes = pc.not_equal(member_ids[1:], member_ids[:-1]).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.flatnonzero(changes) + 1])
    if starts.size != len(households_ids):
        return None
    if not pc.all(pc.equal(member_ids.take(pa.array(starts)), households_ids)).as_py():
        return None
    return starts


def _reduce_runs(values: pl.Series, how: str, starts: np.ndarray) -> pl.Series:
    """A sum, maximum or minimum of a number over each run of members, as SQL's: NULLs ignored;
    the maximum and minimum are NULL where every value is."""
    if how == "sum":
        return pl.Series(values.name, np.add.reduceat(values.fill_null(0.0).to_numpy(), starts), pl.Float64)
    running = np.concatenate([[0], np.cumsum(values.is_not_null().cast(pl.Int64).to_numpy())])
    present = running[np.append(starts[1:], len(values))] - running[starts]
    fill = -np.inf if how == "max" else np.inf
    reduce = np.maximum if how == "max" else np.minimum
    reduced = reduce.reduceat(values.fill_null(fill).to_numpy(), starts)
    column = pl.from_arrow(pa.array(reduced, pa.float64(), mask=present == 0))
    assert isinstance(column, pl.Series)
    return column.alias(values.name)


def _whole(value: pl.Expr) -> pl.Expr:
    """Money and quantities as whole units, half away from zero (unknown → 0)."""
    return _round_half_away(value, 0).cast(pl.Int64).fill_null(0)


def _round_half_away(x: pl.Expr, digits: int) -> pl.Expr:
    scale = 10.0**digits
    return x.sign() * (x.abs() * scale + 0.5).floor() / scale


@dataclass
class _Compiler:
    program: str
    parameters: dict[str, float]
    aggregates: _Aggregates

    def derived_column(self, name: str) -> str:
        return f"__{self.program}__d__{name}"

    def household(self, e: Expr) -> pl.Expr:
        return self._compile(e, "household")

    def _compile(self, e: Expr, scope: str) -> pl.Expr:
        def c(sub: Expr) -> pl.Expr:
            return self._compile(sub, scope)

        match e:
            case Num(value=v):
                return pl.lit(v, pl.Float64)
            case Bool(value=v):
                return pl.lit(v, pl.Boolean)
            case Null(kind=kind):
                return pl.lit(None, pl.Boolean if kind == "boolean" else pl.Float64)
            case Ref(source="parameter", name=name):
                return pl.lit(self.parameters[name], pl.Float64)
            case Ref(source="derived", name=name):
                return pl.col(self.derived_column(name))
            case Ref(name=name):
                return pl.col(name)
            case Neg(operand=inner):
                return -c(inner)
            case Arith(op="/"):
                divisor = c(e.right)
                return pl.when(divisor == 0.0).then(pl.lit(None, pl.Float64)).otherwise(c(e.left) / divisor)
            case Arith(op="+"):
                return c(e.left) + c(e.right)
            case Arith(op="-"):
                return c(e.left) - c(e.right)
            case Arith(op="*"):
                return c(e.left) * c(e.right)
            case Compare():
                return _compare(e.op, c(e.left), c(e.right))
            case Logic(op="and"):
                return c(e.left) & c(e.right)
            case Logic(op="or"):
                return c(e.left) | c(e.right)
            case Not(operand=inner):
                return ~c(inner)
            case IsNull(operand=inner):
                return c(inner).is_null()
            case Between():
                x = c(e.operand)
                return (x >= c(e.low)) & (x <= c(e.high))
            case InList():
                x = c(e.operand)
                found = x == e.values[0]
                for value in e.values[1:]:
                    found = found | (x == value)
                return found
            case Case():
                chosen = c(e.default)
                for condition, then in reversed(e.whens):
                    chosen = pl.when(c(condition)).then(c(then)).otherwise(chosen)
                return chosen
            case Func():
                return self._function(e, scope)
            case Agg():
                return self._aggregate(e)
        raise TypeError(e)

    def _function(self, e: Func, scope: str) -> pl.Expr:
        args = [self._compile(a, scope) for a in e.args]
        if e.name == "coalesce":
            return pl.coalesce(args) if len(args) > 1 else args[0]
        if e.name == "least":
            return pl.min_horizontal(args) if len(args) > 1 else args[0]
        if e.name == "greatest":
            return pl.max_horizontal(args) if len(args) > 1 else args[0]
        if e.name == "abs":
            return args[0].abs()
        if e.name == "floor":
            return args[0].floor()
        if e.name == "ceil":
            return args[0].ceil()
        digits = int(e.args[1].value) if len(e.args) > 1 and isinstance(e.args[1], Num) else 0
        return _round_half_away(args[0], digits)

    def _aggregate(self, e: Agg) -> pl.Expr:
        arg = self._compile(e.arg, "member")
        used = tuple(sorted((name, self.parameters[name]) for name in _parameters_in(e.arg)))
        key = (e.name, e.arg, used)
        if e.name == "count_members":
            column = self.aggregates.column(key, arg.fill_null(False), "count", pl.lit(0.0))
        elif e.name in ("any_member", "all_members"):
            how, no_members = ("any", False) if e.name == "any_member" else ("all", True)
            column = self.aggregates.column(key, arg.fill_null(False), how, pl.lit(no_members))
        else:  # sum_members is 0, max_members and min_members NULL, without members
            how = e.name.removesuffix("_members")
            empty = pl.lit(0.0) if how == "sum" else pl.lit(None, pl.Float64)
            column = self.aggregates.column(key, arg, how, empty)
        return pl.col(column)


def _compare(op: str, left: pl.Expr, right: pl.Expr) -> pl.Expr:
    if op == "=":
        return left == right
    if op == "<>":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _parameters_in(e: Expr) -> set[str]:
    """The parameters an expression names (an aggregate's key: equal trees under other values differ)."""
    match e:
        case Ref(source="parameter", name=name):
            return {name}
        case Neg(operand=x) | Not(operand=x) | IsNull(operand=x) | InList(operand=x):
            return _parameters_in(x)
        case Arith() | Compare() | Logic():
            return _parameters_in(e.left) | _parameters_in(e.right)
        case Between():
            return _parameters_in(e.operand) | _parameters_in(e.low) | _parameters_in(e.high)
        case Case():
            found = _parameters_in(e.default)
            for condition, then in e.whens:
                found |= _parameters_in(condition) | _parameters_in(then)
            return found
        case Func(args=args):
            return set().union(*(_parameters_in(a) for a in args))
        case Agg(arg=arg):
            return _parameters_in(arg)
    return set()
