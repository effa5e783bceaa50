"""The stream mule's script: uWSGI runs this file in the mule (``mule = %dflags/mule.py``).

A file, not ``module:callable``: uWSGI 2.0.30 crashes calling a mule's callable under
``lazy-apps``. See ``aerie.stream_server``.
"""

from flags.app import serve_streams

serve_streams()
