"""``aerie``: the operator's command line over Aerie's public HTTP APIs.

It does what an operator would otherwise do with curl and a token (tenants, clients, flags,
audit) as a platform client, so every action goes through the same checks, events and audit
trail as any other caller: the command has no back door into Redis.

It must start fast and run anywhere the shared library is installed, so it imports neither
falcon nor redis, and loads ``requests`` only once a command is about to call the network
(``aerie --help`` needs none of it). Exit statuses: 0 done, 1 the API or the network failed,
2 bad usage or configuration, 3 an audit chain that does not verify, 130 interrupted.
"""
