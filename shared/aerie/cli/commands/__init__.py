"""One module per resource; each adds its subcommands with ``register(subparsers, common)``.

A subcommand stores its handler as ``run``: ``run(api, args, output) -> exit status``. The
handlers receive the :class:`~aerie.cli.api.Api` ready made, so none of these modules
imports ``requests`` and building the parser stays cheap.
"""
