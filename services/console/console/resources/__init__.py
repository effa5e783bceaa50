"""The console's pages: thin resources over :mod:`console.web` and :mod:`console.domain`."""
