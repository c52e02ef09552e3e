"""The concepts civicard must never hold, and the detector that names them in any identifier."""

from __future__ import annotations

import re

# Data civicard never stores and no rule or report may refer to. Matched against table,
# column, field and code names (split into words), so `party_member` or `votingDistrict` are caught.
FORBIDDEN_CONCEPTS: dict[str, str] = {
    r"politic\w*": "political opinion or activity",
    r"part(y|ies)": "political party",
    r"rall(y|ies)": "rally attendance",
    r"vot(e|es|ed|er|ers|ing)": "voting",
    r"elector\w*": "voting",
    r"ballots?": "voting",
    r"religio\w*": "religion",
    r"church\w*|mosque\w*|temple\w*|faith": "religion",
    r"ethnic\w*|race|racial|caste|tribe\w*": "ethnicity",
    r"union(_?member\w*|s)?|trade_?union\w*": "union membership",
    r"sexual\w*|orientation|gay|lesbian|lgbt\w*": "sexual orientation",
    r"social_?media|facebook|twitter|instagram|tiktok|whatsapp|telegram": "social-media data",
}
_FORBIDDEN = [(re.compile(rf"^(?:{p})$"), label) for p, label in FORBIDDEN_CONCEPTS.items()]
_WORD_SPLIT = re.compile(r"[^a-z0-9]+|(?<=[a-z])(?=[0-9])")


def forbidden_concept(name: str) -> str | None:
    """The forbidden concept a name refers to, or None.

    Checks every run of up to three consecutive words, joined with and without underscores, so
    `socialMediaHandle`, `party_member` and `trade_union_dues` are all caught.
    """
    lowered = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()
    words = [w for w in _WORD_SPLIT.split(lowered) if w]
    candidates = {lowered}
    for size in (1, 2, 3):
        for start in range(len(words) - size + 1):
            run = words[start : start + size]
            candidates |= {"_".join(run), "".join(run)}
    for word in sorted(candidates):
        for pattern, label in _FORBIDDEN:
            if pattern.match(word):
                return label
    return None
