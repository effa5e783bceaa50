"""Feature flags: the evaluation engine shared by the flags service and the Python client.

``aerie_client.flags.evaluation`` is the one implementation of docs/api.md's evaluation order and bucket
formula; ``aerie_client.flags.client`` evaluates a tenant's snapshot locally with it;
``aerie_client.flags.vectors`` holds the test vectors both sides' tests run; ``aerie_client.flags.testing``
is the client's fixed-values double; ``aerie_client.flags.openfeature`` (the ``openfeature`` extra) is
an OpenFeature provider over the client, imported by nothing else so the SDK stays optional.
"""
