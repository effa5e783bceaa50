"""HTTP resources of the flags service: thin, they delegate to storage, snapshot and evaluator."""
