"""Benchmarks: modes, timing, records, results files, report, run comparison, FLOP floor."""
