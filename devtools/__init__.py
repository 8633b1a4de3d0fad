"""Developer tooling: the two README commands and the embedded PostgreSQL/Redis servers they use.

Nothing here runs in production; deployments configure DATABASE_URL and REDIS_URL.
"""
