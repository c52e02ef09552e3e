"""The input snapshot text is canonical JSON: what json.dumps with sorted keys would write."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from civicard.programs.cycles import inputs_json

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**15), 10**15), st.floats(allow_nan=False, allow_infinity=False)
)


@settings(max_examples=200)
@given(st.dictionaries(NAMES, VALUES, max_size=12), st.lists(st.dictionaries(NAMES, VALUES, max_size=12), max_size=5))
def test_the_snapshot_text_is_json_with_sorted_keys_and_numbers_as_floats(household, members) -> None:  # type: ignore[no-untyped-def]
    def plain(values):  # type: ignore[no-untyped-def]
        skip = {"household_id", "region", "person_id"}
        return {k: v if v is None or isinstance(v, bool) else float(v) for k, v in values.items() if k not in skip}

    text = inputs_json(household, members)
    expected_members = sorted(json.dumps(plain(m), sort_keys=True, separators=(",", ":")) for m in members)
    expected = (
        '{"household":'
        + json.dumps(plain(household), sort_keys=True, separators=(",", ":"))
        + ',"members":['
        + ",".join(expected_members)
        + "]}"
    )
    assert text == expected
    assert json.loads(text)["household"] == plain(household)
