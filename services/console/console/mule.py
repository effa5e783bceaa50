"""The stream mule's script: uWSGI runs this file in the mule (``mule = %dconsole/mule.py``).

A file, not ``module:callable``: uWSGI 2.0.30 crashes calling a mule's callable under
``lazy-apps``. See ``aerie.stream_server``.
"""

from console.app import serve_streams

serve_streams()
