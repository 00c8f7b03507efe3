"""Whole runs: run folders, JUnit outcomes, upgrade-gate bundles and verdicts, determinism (agree)."""
