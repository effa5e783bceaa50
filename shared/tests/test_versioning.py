"""``If-Match``: which headers name a version, and which can match none (412, never a 500)."""

from __future__ import annotations

import falcon.testing
import pytest

from aerie.errors import Problem
from aerie.versioning import expected_version


def version_for(if_match: str | None) -> int | None:
    headers = {} if if_match is None else {"If-Match": if_match}
    return expected_version(falcon.testing.create_req(headers=headers))


@pytest.mark.parametrize(
    ("header", "version"),
    [(None, None), ("*", None), (" * ", None), ('"1"', 1), ('"42"', 42), (' "7" ', 7), ('W/"3"', 3)],
)
def test_our_etags_and_star(header: str | None, version: int | None) -> None:
    assert version_for(header) == version


@pytest.mark.parametrize(
    "header",
    [
        "1",  # unquoted
        '""',
        '"abc"',
        '"-1"',
        '"1", "2"',  # a list: one version is compared
        '"\u00b2"',  # a digit to str.isdigit, not to int (was a 500)
        '"\u0661"',  # ARABIC-INDIC DIGIT ONE
        '"' + "9" * 5000 + '"',  # past what int reads from a string (was a 500)
        '"' + "9" * 19 + '"',
        'w/"1"',
    ],
)
def test_anything_else_can_match_no_version_and_is_412(header: str) -> None:
    with pytest.raises(Problem) as info:
        version_for(header)
    assert info.value.status_code == 412
    assert info.value.problem_code == "precondition_failed"
