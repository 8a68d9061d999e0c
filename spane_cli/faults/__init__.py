"""Fault injection: private PostgreSQL and Redis servers that can be killed and restarted, a
stream of workflows whose nodes record their side effects, and the check that nothing was
lost, stuck or completed twice. Run by `scripts/fault_injection.py`, and in short by the
test suite."""
