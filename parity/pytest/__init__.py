"""The pytest plugin: each module owns its options and hooks; plugin.py lists them."""
