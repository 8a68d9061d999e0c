"""The database: the single source of truth for executions, nodes, events and dead letters."""
