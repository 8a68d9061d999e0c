"""`spane bench`: spane against raw RQ on the same Redis, measured in the same run."""
