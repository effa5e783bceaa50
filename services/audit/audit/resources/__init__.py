"""HTTP resources of the audit service: thin, they resolve the trail and delegate."""
