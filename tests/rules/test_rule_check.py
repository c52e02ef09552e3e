"""`civicard rules check` and `civicard rules test`: what a rule file may not contain, each refusal
with its own code and the part of the file it is in, and the exit codes an administrator sees."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from civicard.adapters.cli.main import app
from civicard.programs.testing import rule_files
from tests.rules.builders import rule_dict

RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
runner = CliRunner()


def _write(tmp_path: Path, raw: dict[str, Any] | str, name: str = "probe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _check(*paths: Path) -> Any:
    return runner.invoke(app, ["rules", "check", *map(str, paths)])


def _flat(output: str) -> str:
    """The output with rich's line wrapping (at the 80 columns of the test terminal) undone."""
    return " ".join(output.split())


def _refusal(result: Any) -> tuple[str, str]:
    """(code, message) of a refused check: one line, `error: <message> (<code>)`, exit code 1."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    found = re.fullmatch(r"error: (?P<message>.+) \((?P<code>[a-z_]+)\)", lines[0])
    assert found, lines[0]
    return found["code"], found["message"]


def _condition(expression: str) -> dict[str, Any]:
    return rule_dict({"has_children": "count_members(age < 18) >= 1", "low_income": expression})


# --- refused expressions: the code, the part of the file, and what to do about it -------------

REFUSED_CONDITIONS = [
    ("religion = 1", "forbidden_field", "'religion' is forbidden: civicard never holds or uses religion"),
    ("party_member", "forbidden_field", "'party_member' is forbidden: civicard never holds or uses political party"),
    ("voted_in_2024", "forbidden_field", "'voted_in_2024' is forbidden: civicard never holds or uses voting"),
    ("any_member(church_goer)", "forbidden_field", "'church_goer' is forbidden"),
    ("household_incme <= 7000", "unknown_field", "unknown name 'household_incme'; did you mean 'household_income'?"),
    ("any_member(agee < 18)", "unknown_field", "unknown name 'agee'; did you mean 'age'?"),
    ("shoe_size > 40", "unknown_field", "unknown name 'shoe_size'"),
    ("(SELECT 1) = 1", "subquery_not_allowed", "a rule cannot contain a query (SELECT, subquery or UNION)"),
    ("member_count IN (SELECT 1)", "subquery_not_allowed", "IN takes a list of numbers, not a query"),
    ("true UNION SELECT false", "subquery_not_allowed", "(SELECT, subquery or UNION)"),
    ("EXISTS (SELECT 1)", "subquery_not_allowed", "a rule cannot contain a query"),
    ("true; SELECT * FROM persons", "multiple_statements", "only one expression is allowed (found a second statement)"),
    ("read_csv('x') = 1", "function_not_allowed", "the function READ_CSV is not allowed (allowed: coalesce, least"),
    ("upper(x) = 1", "function_not_allowed", "the function UPPER is not allowed"),
    ("length(upper(x)) > 1", "function_not_allowed", "the function LENGTH is not allowed"),
    ("random() < 0.5", "function_not_allowed", "the function RAND is not allowed"),
    ("household_income > 'abc'", "text_not_allowed", "text values such as 'abc' are not allowed; use numbers"),
    ("age < 18", "member_input_outside_aggregate", "'age' is a member input; use it inside a member aggregate"),
    ("any_member(count_members(age < 18) > 1)", "nested_aggregate", "count_members cannot be used inside another"),
    ("any_member(member_count > 1)", "household_value_in_member_aggregate", "'member_count' is a household value"),
    ("household_income", "wrong_type", "must be a yes/no condition, but 'household_income' is a number"),
    ("42", "wrong_type", "must be a yes/no condition, but '42' is a number"),
    ("household_income AND true", "wrong_type", "AND needs yes/no conditions"),
    ("owns_dwelling + 1 > 0", "wrong_type", "+ needs numbers"),
    ("household_income >", "syntax_error", "cannot read the expression"),
    ("CAST(household_income AS INT) > 0", "function_not_allowed", "the function CAST is not allowed"),
    ("h.household_income > 0", "not_allowed", "is not a plain name"),
]


@pytest.mark.parametrize(("expression", "code", "message"), REFUSED_CONDITIONS, ids=[r[0] for r in REFUSED_CONDITIONS])
def test_rules_check_refuses_a_condition_with_its_own_code_and_the_part_of_the_file(
    tmp_path: Path, expression: str, code: str, message: str
) -> None:
    got_code, got_message = _refusal(_check(_write(tmp_path, _condition(expression))))
    assert got_code == code
    assert got_message.startswith("probe.yaml conditions.low_income: ")
    assert message in got_message


def test_rules_check_says_where_in_the_expression_a_forbidden_name_is(tmp_path: Path) -> None:
    _, message = _refusal(_check(_write(tmp_path, _condition("household_income < 1 OR religion = 2"))))
    assert "(at character 25 of 'household_income < 1 OR religion = 2')" in message


def test_rules_check_names_the_amount_derived_value_or_item_that_is_wrong(tmp_path: Path) -> None:
    cases = {
        "amount": rule_dict({"ok": "true"}, "1; 2"),
        "derived.per_person": rule_dict(
            {"ok": "true"}, derived={"per_person": ("money", "household_income / voter_count")}
        ),
        "items[1]": rule_dict({"ok": "true"}, items={"RICE-1KG": "1", "OIL-1L": "upper(1)"}),
    }
    codes = {}
    for part, raw in cases.items():
        code, message = _refusal(_check(_write(tmp_path, raw)))
        assert message.startswith(f"probe.yaml {part}: "), message
        codes[part] = code
    assert codes == {
        "amount": "multiple_statements",
        "derived.per_person": "forbidden_field",
        "items[1]": "function_not_allowed",
    }


def test_rules_check_refuses_a_number_where_a_condition_belongs_and_a_condition_as_the_amount(tmp_path: Path) -> None:
    code, message = _refusal(_check(_write(tmp_path, rule_dict({"ok": "true"}, "member_count > 2"))))
    assert (code, message) == (
        "wrong_type",
        "probe.yaml amount: must be a number, but 'member_count > 2' is a boolean",
    )


def test_rules_check_refuses_a_file_that_is_not_yaml(tmp_path: Path) -> None:
    code, message = _refusal(_check(_write(tmp_path, "program: probe\nconditions: {ok: [unclosed\n")))
    assert code == "invalid_yaml"
    assert message.startswith("probe.yaml is not valid YAML")


def test_rules_check_refuses_a_condition_without_a_label(tmp_path: Path) -> None:
    raw = _condition("household_income <= 7000")
    del raw["conditions"]["low_income"]["label"]["en"]
    code, message = _refusal(_check(_write(tmp_path, raw)))
    assert code == "missing_label"
    assert message == "probe.yaml conditions.low_income: a label needs Spanish (es) and English (en) text"


def test_rules_check_refuses_a_file_without_a_title_or_a_legal_basis(tmp_path: Path) -> None:
    untitled = rule_dict({"ok": "true"})
    del untitled["title"]
    unfounded = rule_dict({"ok": "true"})
    unfounded["legal_basis"] = " "
    assert _refusal(_check(_write(tmp_path, untitled))) == (
        "missing_label",
        "probe.yaml title: a label needs Spanish (es) and English (en) text",
    )
    assert _refusal(_check(_write(tmp_path, unfounded))) == (
        "missing_field",
        "probe.yaml legal_basis: 'legal_basis' is required",
    )


def test_rules_check_stops_at_the_first_bad_file_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # short paths: rich folds long ones at the test terminal's 80 columns
    _write(tmp_path, rule_dict({"ok": "true"}), "good.yaml")
    _write(tmp_path, _condition("religion = 1"), "bad.yaml")
    result = _check(Path("good.yaml"), Path("bad.yaml"))
    assert result.exit_code == 1
    assert "good.yaml: probe 1 (draft)" in _flat(result.output)
    assert "error: bad.yaml conditions.low_income" in _flat(result.output)
    assert result.output.rstrip().endswith("(forbidden_field)")


# --- accepted files ---------------------------------------------------------------------------


def test_rules_check_accepts_every_rule_file_in_rulepacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(RULEPACKS.parent)
    files = [path.relative_to(RULEPACKS.parent) for path in rule_files(RULEPACKS)]
    result = _check(*files)
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    for path in files:
        line = rf"{re.escape(str(path))}: \w+ [\d.]+ \((draft|published|retired)\) — \d+ condition\(s\), \d+ test\(s\)"
        assert re.search(line + r", sha256 [0-9a-f]{64}", shown), path


def test_rules_check_accepts_every_allowed_form_of_expression(tmp_path: Path) -> None:
    conditions = {
        "arithmetic": "(household_income + benefits_income - 1) * 2 / member_count >= -3.5",
        "logic": "NOT owns_dwelling AND (owns_vehicle OR savings IS NULL) AND savings IS NOT NULL",
        "ranges": "member_count BETWEEN 1 AND 9 AND member_count NOT BETWEEN 10 AND 12",
        "lists": "member_count IN (1, 2, -3) AND member_count NOT IN (0)",
        "case": "CASE WHEN owns_dwelling THEN true WHEN savings > 0 THEN false ELSE null IS NULL END",
        "functions": "COALESCE(savings, 0) + LEAST(1, 2) + GREATEST(1, null) + ABS(-1) + ROUND(2.5) + ROUND(1.25, 1)"
        " + FLOOR(1.5) + CEIL(1.5) > 0",
        "aggregates": "count_members(age < 18) + sum_members(income) + max_members(age) + min_members(age) >= 0"
        " AND any_member(student) OR all_members(chronic_e11 OR NOT employed)",
    }
    result = _check(_write(tmp_path, rule_dict(conditions, "IF(owns_dwelling, 1, 2)")))
    assert result.exit_code == 0, result.output
    assert "7 condition(s)" in result.output


# --- rules test -------------------------------------------------------------------------------


def test_rules_test_runs_every_case_on_every_evaluator_and_exits_0() -> None:
    result = runner.invoke(app, ["rules", "test", str(RULEPACKS)])
    assert result.exit_code == 0, result.output
    cases = sum(len(yaml.safe_load(p.read_text(encoding="utf-8"))["tests"]) for p in rule_files(RULEPACKS))
    assert f"{cases * 3} checks passed ({cases} cases × 3 evaluators)" in _flat(result.output)
    assert "FAIL" not in result.output


@pytest.mark.postgres
def test_rules_test_also_runs_every_case_on_postgresql(postgres_conninfo: str) -> None:
    result = runner.invoke(app, ["rules", "test", str(RULEPACKS / "child_allowance"), "--postgres", postgres_conninfo])
    assert result.exit_code == 0, result.output
    assert "60 checks passed (15 cases × 4 evaluators)" in _flat(result.output)


def test_rules_test_with_a_wrong_expectation_exits_1_and_names_the_case(tmp_path: Path) -> None:
    raw = yaml.safe_load((RULEPACKS / "child_allowance" / "2026.1.yaml").read_text(encoding="utf-8"))
    case = raw["tests"][0]
    case["expect"]["amount"] = 8_001
    result = runner.invoke(app, ["rules", "test", str(_write(tmp_path, raw, "2026.1.yaml"))])
    assert result.exit_code == 1
    shown = _flat(result.output)
    assert shown.count("FAIL child_allowance") == 3, result.output  # python, duckdb and sqlite
    for evaluator in ("python", "duckdb", "sqlite"):
        failure = f"FAIL child_allowance 2026.1 «{case['name']}» on {evaluator}: amount 8000, expected 8001"
        assert failure in shown, result.output


def test_rules_test_with_a_wrong_condition_expectation_names_the_condition(tmp_path: Path) -> None:
    raw = yaml.safe_load((RULEPACKS / "child_allowance" / "2026.1.yaml").read_text(encoding="utf-8"))
    raw["tests"][1]["expect"]["conditions"]["low_income"] = False
    result = runner.invoke(app, ["rules", "test", str(_write(tmp_path, raw, "2026.1.yaml"))])
    assert result.exit_code == 1
    assert "condition low_income True, expected False" in _flat(result.output)


def test_rules_test_refuses_a_folder_with_a_bad_rule_file(tmp_path: Path) -> None:
    _write(tmp_path, _condition("household_income > 'abc'"))
    code, message = _refusal(runner.invoke(app, ["rules", "test", str(tmp_path)]))
    assert code == "text_not_allowed"
    assert message.startswith("probe.yaml conditions.low_income: ")


def test_rules_test_refuses_two_files_with_the_same_program_and_version(tmp_path: Path) -> None:
    _write(tmp_path, rule_dict({"ok": "true"}), "a.yaml")
    _write(tmp_path, rule_dict({"ok": "false"}), "b.yaml")
    code, message = _refusal(runner.invoke(app, ["rules", "test", str(tmp_path)]))
    assert code == "duplicate_version"
    assert "probe 1 is defined twice" in message


# --- what no evaluator could run, or would name differently ----------------------------------


def test_rules_check_refuses_a_number_too_large_for_a_double(tmp_path: Path) -> None:
    # 1e400 would be infinity: Python overflowed and the SQL named a column `inf`.
    code, message = _refusal(_check(_write(tmp_path, rule_dict({"ok": "true"}, "1e400"))))
    assert code == "number_out_of_range"
    assert message.startswith("probe.yaml amount: ")


def test_rules_check_refuses_rounding_to_more_digits_than_a_double_has(tmp_path: Path) -> None:
    # 10 ** 400 overflowed in both evaluators.
    code, message = _refusal(_check(_write(tmp_path, rule_dict({"ok": "true"}, "ROUND(household_income, 400)"))))
    assert code == "invalid_round_digits"
    assert message.startswith("probe.yaml amount: ")


@pytest.mark.parametrize("name", [1, True, "Low_Income", "low income"], ids=["1", "yes", "capitals", "space"])
def test_rules_check_refuses_a_condition_name_that_is_not_a_plain_name(tmp_path: Path, name: object) -> None:
    # YAML reads `1:` as a number and `yes:` as true: the engines named such a condition '1' or 'True'.
    raw = rule_dict({"placeholder": "true"})
    raw["conditions"] = {name: {"label": {"es": "sí", "en": "yes"}, "expression": "member_count > 0"}}
    code, message = _refusal(_check(_write(tmp_path, raw)))
    assert code == "invalid_name"
    assert message.startswith("probe.yaml conditions: ")


@pytest.mark.parametrize("section", ["parameters", "derived"])
def test_rules_check_refuses_a_parameter_or_derived_value_named_like_an_input(tmp_path: Path, section: str) -> None:
    if section == "parameters":
        raw = rule_dict({"adult": "any_member(age >= 18)"}, parameters={"age": ("integer", {"2026-01-01": 99})})
    else:
        raw = rule_dict({"big": "member_count > 3"}, derived={"member_count": ("integer", "10")})
    _, message = _refusal(_check(_write(tmp_path, raw)))
    assert "member_count" in message or "age" in message
