"""The monitor's reading of pytest's JUnit XML: which journeys passed, which failed and why."""

from __future__ import annotations

import pytest

from aerie.synthetic import JourneyResult, parse_junit

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="4" time="3.1">
<testcase classname="test_tenants_journeys" name="test_onboard" time="1.25"/>
<testcase classname="test_projects_journeys" name="test_create" time="0.5">
  <failure message="AssertionError: projects answered 503">trace line 1
trace line 2</failure>
</testcase>
<testcase classname="test_flags_journeys" name="test_flag" time="0.1">
  <error message="failed on setup with &quot;ConnectionError&quot;">setup trace</error>
</testcase>
<testcase classname="test_audit_journeys" name="test_trail" time="0.0">
  <skipped type="pytest.skip" message="audit not deployed">skip</skipped>
</testcase>
</testsuite></testsuites>
"""


def test_each_journey_with_its_result_time_and_first_message_line() -> None:
    assert parse_junit(REPORT) == [
        JourneyResult("test_tenants_journeys::test_onboard", True, 1.25, ""),
        JourneyResult("test_projects_journeys::test_create", False, 0.5, "AssertionError: projects answered 503"),
        JourneyResult("test_flags_journeys::test_flag", False, 0.1, 'failed on setup with "ConnectionError"'),
    ]


def test_a_failure_without_a_message_attribute_reports_its_text() -> None:
    xml = '<testsuite><testcase classname="pkg.test_x" name="t"><failure>boom\nmore</failure></testcase></testsuite>'
    assert parse_junit(xml) == [JourneyResult("test_x::t", False, 0.0, "boom")]


def test_a_bare_failure_still_counts_as_failed() -> None:
    xml = '<testsuite><testcase name="t" time="2"><failure/></testcase></testsuite>'
    assert parse_junit(xml) == [JourneyResult("t", False, 2.0, "failure")]


def test_a_truncated_report_is_an_error_not_a_pass() -> None:
    with pytest.raises(Exception, match=r"no element found|unclosed"):
        parse_junit('<testsuite><testcase name="t">')
