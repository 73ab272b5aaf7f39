"""Benchmarks of the outbox dispatcher, each printing its figures as ratios to a same-run baseline."""
