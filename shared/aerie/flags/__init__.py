"""Feature flags: the evaluation engine shared by the flags service and the Python client.

``aerie.flags.evaluation`` is the one implementation of docs/api.md's evaluation order and bucket
formula; ``aerie.flags.client`` evaluates a tenant's snapshot locally with it;
``aerie.flags.vectors`` holds the test vectors both sides' tests run; ``aerie.flags.testing``
is the client's fixed-values double; ``aerie.flags.openfeature`` (the ``openfeature`` extra) is
an OpenFeature provider over the client, imported by nothing else so the SDK stays optional.
"""
