"""The one error the local stack raises for everything that keeps it from running."""

__all__ = ["StackError"]


class StackError(RuntimeError):
    """The stack could not start or lost a process; the message says which and why."""
