"""Peer servers the benchmarks measure mailet-mta against (run as their own processes)."""
