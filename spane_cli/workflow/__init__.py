"""The workflow language: loading, the model, validation."""
