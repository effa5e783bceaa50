"""Cloud Foundry tooling: manifests, staging a push directory, and the rolling deploy.

Nothing here runs inside a pushed app; it is what ``make stage`` and ``make deploy`` call
from a checkout of the repository (``python -m aerie.cf.stage``, ``python -m aerie.cf.deploy``).
"""
