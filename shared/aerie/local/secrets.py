"""The local stack's secrets: made once, kept in ``.aerie/secrets.json``, reused on every run.

Keeping them across runs matters: Redis persists tenants and clients made with the old
bootstrap secret, tokens in a developer's shell stay verifiable, and ``.aerie/local.env``
does not change under the end-to-end suite. The file is written with mode 0600 and
replaced atomically, so an interrupted first run never leaves half a key behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from aerie.suite.secrets import DEFAULT_CLIENT_SERVICES, SuiteSecrets, generate, new_signing_jwks, write_private_file

__all__ = ["LocalSecrets", "load_or_create", "new_signing_jwks"]

#: The stack's secrets are the suite's secrets, kept in a file.
LocalSecrets = SuiteSecrets


def load_or_create(path: Path, services: Iterable[str] = DEFAULT_CLIENT_SERVICES) -> SuiteSecrets:
    """The secrets in ``path``, made and saved first if the file does not exist yet.

    A service added since the file was written gets its client added, and the file is
    rewritten; everything already there is kept as it was.
    """
    wanted = list(services)
    path = Path(path)
    if path.exists():
        try:
            loaded = SuiteSecrets.from_dict(json.loads(path.read_text()))
        except ValueError as exc:
            raise RuntimeError(f"{path} is not usable ({exc}); delete it (make clean) to start afresh") from None
        updated = loaded.with_clients_for(wanted)
        if updated is not loaded:
            write_private_file(path, json.dumps(updated.to_dict(), indent=2) + "\n")
        return updated
    made = generate(wanted)
    write_private_file(path, json.dumps(made.to_dict(), indent=2) + "\n")
    return made
