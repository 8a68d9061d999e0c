"""The `/v1` routes, one module per resource, each mirroring its `spane` commands."""
