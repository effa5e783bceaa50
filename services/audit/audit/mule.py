"""The export mule's script: uWSGI runs this file in the mule (``mule = %daudit/mule.py``).

A file, not ``module:callable``: uWSGI 2.0.30 crashes calling a mule's callable under
``lazy-apps``. See ``aerie.stream_server``.
"""

from audit.app import serve_exports

serve_exports()
