"""Benchmarks behind ``avworld bench <target>``: each returns one JSON-ready dict of measured figures."""
