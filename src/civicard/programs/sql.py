"""Compiling rule packs to one SQL query, for DuckDB, SQLite, PostgreSQL or Spark.

The query reads two relations: `households` (household_id + household inputs) and `members`
(household_id + member inputs). Member aggregates become one GROUP BY over members; every
program's derived values, conditions, status, amount and items become columns of one SELECT,
so all programs are decided in one pass. Canonical forms make every engine agree with the
Python evaluator: numbers are doubles, `a / b` is `a / NULLIF(b, 0)`, LEAST/GREATEST ignore
NULLs, ROUND and the final money rounding are half away from zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlglot import exp

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
    kind_of,
)
from civicard.programs.rulepack import RulePack

ENGINES = ("duckdb", "sqlite", "postgres", "spark")


@dataclass
class _Compiler:
    parameters: dict[str, float]
    derived: dict[str, Expr]
    aggregates: dict[str, tuple[str, exp.Expr]] = field(default_factory=dict)
    """Member-side aggregate SQL → (column alias, expression), shared by every pack of a query."""

    def household(self, e: Expr) -> exp.Expr:
        return self._compile(e, "h")

    def _compile(self, e: Expr, table: str) -> exp.Expr:
        def c(sub: Expr) -> exp.Expr:
            return self._compile(sub, table)

        match e:
            case Num(value=v):
                return _double(exp.Literal.number(repr(v)))
            case Bool(value=v):
                return exp.Boolean(this=v)
            case Null(kind=kind):
                return exp.Cast(this=exp.Null(), to=exp.DataType.build("BOOLEAN" if kind == "boolean" else "DOUBLE"))
            case Ref(source="parameter", name=name):
                return _double(exp.Literal.number(repr(self.parameters[name])))
            case Ref(source="derived", name=name):
                return exp.Paren(this=c(self.derived[name]))
            case Ref(name=name, kind=kind):
                column = exp.column(name, table=table)
                return column if kind == "boolean" else _double(column)
            case Neg(operand=inner):
                return exp.Neg(this=exp.Paren(this=c(inner)))
            case Arith(op="/"):
                divisor = exp.Nullif(this=exp.Paren(this=c(e.right)), expression=_double(exp.Literal.number(0)))
                return exp.Paren(this=exp.Div(this=exp.Paren(this=c(e.left)), expression=divisor))
            case Arith():
                node = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul}[e.op]
                return exp.Paren(this=node(this=exp.Paren(this=c(e.left)), expression=exp.Paren(this=c(e.right))))
            case Compare():
                node = {"=": exp.EQ, "<>": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}[e.op]
                return exp.Paren(this=node(this=c(e.left), expression=c(e.right)))
            case Logic():
                node = exp.And if e.op == "and" else exp.Or
                return exp.Paren(this=node(this=c(e.left), expression=c(e.right)))
            case Not(operand=inner):
                return exp.Paren(this=exp.Not(this=exp.Paren(this=c(inner))))
            case IsNull(operand=inner):
                return exp.Paren(this=exp.Is(this=c(inner), expression=exp.Null()))
            case Between():
                x = c(e.operand)
                return exp.Paren(
                    this=exp.And(
                        this=exp.GTE(this=x, expression=c(e.low)),
                        expression=exp.LTE(this=x.copy(), expression=c(e.high)),
                    )
                )
            case InList():
                values = [_double(exp.Literal.number(repr(v))) for v in e.values]
                return exp.Paren(this=exp.In(this=c(e.operand), expressions=values))
            case Case():
                ifs = [exp.If(this=c(cond), true=c(then)) for cond, then in e.whens]
                return exp.Case(ifs=ifs, default=c(e.default))
            case Func():
                return self._function(e, table)
            case Agg():
                return self._aggregate(e)
        raise TypeError(e)

    def _function(self, e: Func, table: str) -> exp.Expr:
        args = [self._compile(a, table) for a in e.args]
        if e.name in ("coalesce", "least", "greatest") and len(args) == 1:
            return args[0]  # SQLite refuses COALESCE(x); of one argument, each is that argument
        if e.name == "coalesce":
            return exp.Coalesce(this=args[0], expressions=args[1:])
        if e.name in ("least", "greatest"):
            # Each term is its argument, or failing that the first other non-NULL one: NULLs ignored.
            terms = [exp.Coalesce(this=a, expressions=[o.copy() for o in args if o is not a]) for a in args]
            node = exp.Least if e.name == "least" else exp.Greatest
            return node(this=terms[0], expressions=terms[1:]) if len(terms) > 1 else terms[0]
        if e.name == "abs":
            return exp.Abs(this=args[0])
        if e.name == "floor":
            return exp.Floor(this=args[0])
        if e.name == "ceil":
            return exp.Ceil(this=args[0])
        digits = int(e.args[1].value) if len(e.args) > 1 and isinstance(e.args[1], Num) else 0
        return round_half_away_sql(args[0], digits)

    def _aggregate(self, e: Agg) -> exp.Expr:
        grouped = self.member_aggregate(e)  # compiled with this pack's parameters
        key = grouped.sql()
        if key not in self.aggregates:
            self.aggregates[key] = (f"agg_{len(self.aggregates)}", grouped)
        alias = self.aggregates[key][0]
        column = exp.column(alias, table="a")
        if e.name == "count_members":
            return exp.Coalesce(this=_double(column), expressions=[_double(exp.Literal.number(0))])
        if e.name == "sum_members":
            return exp.Coalesce(this=column, expressions=[_double(exp.Literal.number(0))])
        if e.name == "any_member":
            return exp.Paren(
                this=exp.EQ(
                    this=exp.Coalesce(this=column, expressions=[exp.Literal.number(0)]),
                    expression=exp.Literal.number(1),
                )
            )
        if e.name == "all_members":
            return exp.Paren(
                this=exp.EQ(
                    this=exp.Coalesce(this=column, expressions=[exp.Literal.number(1)]),
                    expression=exp.Literal.number(1),
                )
            )
        return column  # max_members / min_members: NULL when there are no members

    def member_aggregate(self, e: Agg) -> exp.Expr:
        """The GROUP BY side of an aggregate, over `m` (members)."""
        arg = self._compile(e.arg, "m")
        if kind_of(e.arg) == "boolean":
            flag = exp.Case(ifs=[exp.If(this=arg, true=exp.Literal.number(1))], default=exp.Literal.number(0))
            node = {"count_members": exp.Sum, "any_member": exp.Max, "all_members": exp.Min}[e.name]
            return node(this=flag)
        node = {"sum_members": exp.Sum, "max_members": exp.Max, "min_members": exp.Min}[e.name]
        return node(this=arg)


def _double(e: exp.Expr) -> exp.Expr:
    return exp.Cast(this=e, to=exp.DataType.build("DOUBLE"))


def round_half_away_sql(x: exp.Expr, digits: int = 0) -> exp.Expr:
    """SIGN(x) * FLOOR(ABS(x) * 10^d + 0.5) / 10^d — the one rounding rule, in any engine."""
    scale = _double(exp.Literal.number(repr(10.0**digits)))
    half = _double(exp.Literal.number("0.5"))
    magnitude = exp.Floor(this=exp.Add(this=exp.Mul(this=exp.Abs(this=x.copy()), expression=scale), expression=half))
    return exp.Paren(this=exp.Div(this=exp.Mul(this=exp.Sign(this=x), expression=magnitude), expression=scale.copy()))


def _whole(e: exp.Expr) -> exp.Expr:
    """Money and quantities as whole units (unknown → 0)."""
    rounded = round_half_away_sql(e)
    return exp.Coalesce(
        this=exp.Cast(this=rounded, to=exp.DataType.build("BIGINT")), expressions=[exp.Literal.number(0)]
    )


@dataclass(frozen=True)
class Column:
    """One output column: its name and, for conditions, the program and condition it belongs to."""

    name: str
    program: str
    part: str  # "status", "amount", "condition:<name>", "item:<code>"


def output_columns(packs: Sequence[RulePack]) -> list[Column]:
    """The columns every bulk evaluator gives after household_id: per pack its conditions, status,
    amount and items, in that order."""
    columns: list[Column] = []
    for pack in packs:
        program = pack.program
        columns += [Column(f"{program}__c__{c.name}", program, f"condition:{c.name}") for c in pack.conditions]
        columns.append(Column(f"{program}__status", program, "status"))
        columns.append(Column(f"{program}__amount", program, "amount"))
        for grant in pack.items:
            code = grant.item.lower().replace("-", "_").replace(".", "_")
            columns.append(Column(f"{program}__i__{code}", program, f"item:{grant.item}"))
    return columns


def decisions_query(packs: Sequence[RulePack], period: date, engine: str) -> tuple[str, list[Column]]:
    """One SELECT deciding every household of `households` under every pack, for `engine`."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine}")
    selects: list[exp.Expr] = [exp.column("household_id", table="h")]
    columns = output_columns(packs)
    names = iter(columns)
    aggregates: dict[str, tuple[str, exp.Expr]] = {}
    for pack in packs:
        compiler = _Compiler(pack.parameters_on(period), {d.name: d.expression for d in pack.derived}, aggregates)
        conditions = [compiler.household(cond.expression) for cond in pack.conditions]
        for sql in conditions:
            selects.append(exp.alias_(sql, next(names).name))
        all_met = conditions[0].copy()
        for extra in conditions[1:]:
            all_met = exp.And(this=all_met, expression=extra.copy())
        status = exp.Case(
            ifs=[
                exp.If(this=exp.Paren(this=all_met), true=exp.Literal.string("eligible")),
                exp.If(this=exp.Not(this=exp.Paren(this=all_met.copy())), true=exp.Literal.string("not_eligible")),
            ],
            default=exp.Literal.string("unknown"),
        )
        eligible = exp.Paren(this=all_met.copy())
        selects.append(exp.alias_(status, next(names).name))
        amount = _only_if(eligible, _whole(compiler.household(pack.amount.expression)))
        selects.append(exp.alias_(amount, next(names).name))
        for grant in pack.items:
            quantity = _only_if(eligible.copy(), _whole(compiler.household(grant.quantity)))
            selects.append(exp.alias_(quantity, next(names).name))
    query = exp.select(*selects).from_(exp.alias_(exp.to_table("households"), "h"))
    if aggregates:
        grouped = (
            exp.select(
                exp.column("household_id", table="m"),
                *[exp.alias_(grouped_sql, alias) for alias, grouped_sql in aggregates.values()],
            )
            .from_(exp.alias_(exp.to_table("members"), "m"))
            .group_by(exp.column("household_id", table="m"))
        )
        query = query.join(
            exp.alias_(exp.Subquery(this=grouped), "a"),
            on=exp.EQ(this=exp.column("household_id", table="a"), expression=exp.column("household_id", table="h")),
            join_type="left",
        )
    dialect = "postgres" if engine == "postgres" else engine
    return query.sql(dialect=dialect), columns


def _only_if(condition: exp.Expr, value: exp.Expr) -> exp.Expr:
    return exp.Case(ifs=[exp.If(this=condition, true=value)], default=exp.Literal.number(0))
