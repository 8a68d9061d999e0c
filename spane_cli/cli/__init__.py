"""The command line: a thin layer that parses flags, calls the package and maps errors."""
