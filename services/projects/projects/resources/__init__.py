"""HTTP resources of the projects service: thin, they delegate to storage and guards."""
