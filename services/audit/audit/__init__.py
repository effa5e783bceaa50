"""Aerie audit: every security-relevant action of the suite, per tenant, in a verifiable hash chain."""
