"""Node types: the built-ins and those published under the `spane.nodes` entry points."""
