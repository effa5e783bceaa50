"""The flags service: definitions, overrides, evaluation from an in-process snapshot."""
