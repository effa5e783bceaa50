"""The version a deploy gives every manifest as ``((version))``: the suite's, from git tags.

It lives in :mod:`aerie.suite.version` because ``make run`` reports the same one.
"""

from aerie.suite.version import GitVersion, describe, parse_describe

__all__ = ["GitVersion", "describe", "parse_describe"]
