"""spane: DAG workflows in YAML, run on RQ workers, recorded in a database."""

__version__ = "0.1.0"
