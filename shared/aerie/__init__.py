"""Aerie's shared library: what every service stands on.

Nothing in this package connects to Redis or the network at import time; connections are
made on first use, after uWSGI has forked the worker that uses them.
"""

__version__ = "0.1.0"
