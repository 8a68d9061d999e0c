"""The engine: pure scheduling decisions, dispatch through RQ, workers and reconciliation."""
