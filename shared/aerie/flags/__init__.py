"""Feature flags: the evaluation engine shared by the flags service and the Python client.

``aerie.flags.evaluation`` is the one implementation of docs/api.md's evaluation order and bucket
formula; ``aerie.flags.client`` evaluates a tenant's snapshot locally with it;
``aerie.flags.vectors`` holds the test vectors both sides' tests run.
"""
