"""HTTP resources of the tenants service: thin, declaring their contract with @endpoint."""
