"""Benchmarks of ghl-bridge against its real limits: `python -m bench.run [--quick]`."""
