"""Settings that lift the rate limits (:mod:`aerie.rate_limits`, and the token endpoint's on
failed authentications) for tests that make many requests as one tenant, or fail many
authentications, to test something else; a test of the limits sets its own."""

from __future__ import annotations

import json

from aerie.rate_limits import DEFAULT_LIMITS, RATE_LIMITS

__all__ = ["NO_RATE_LIMITS"]

NO_RATE_LIMITS: dict[str, str] = {
    RATE_LIMITS: json.dumps(dict.fromkeys(DEFAULT_LIMITS)),
    # The tenants service's limits on failed client authentications (0 lifts them).
    "AERIE_AUTH_FAILURES_PER_CLIENT": "0",
    "AERIE_AUTH_FAILURES_PER_ADDRESS": "0",
}
