"""Running Aerie on one machine: an embedded Redis and the local stack (``make run``)."""
