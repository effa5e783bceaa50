"""The Aerie suite as the developer tooling sees it: its services, their version, their secrets.

``aerie.local`` (``make run``) and ``aerie.cf`` (``make stage``, ``make deploy``) both need
these and neither may import the other; this package imports neither. Like them it is
development tooling, so ``make stage`` leaves it out of the wheel a pushed app installs.
"""
