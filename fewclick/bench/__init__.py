"""Benchmarks (`fewclick benchmark <kind>`): `latency` today; `cli` is laid out for more kinds."""
