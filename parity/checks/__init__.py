"""The case table and one implementation of each check, which the CLI and the tests both call."""
