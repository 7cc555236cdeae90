"""Nightly history: an index of every run's record.json (reports/history.sqlite), the runs as a
table, new failures, fixed and flaky tests, and trend plots of key measurements (docs/history.md).

The records stay the source of truth; the index is a cache rebuilt from them whenever they change.
"""
