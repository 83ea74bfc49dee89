"""Builders shared by the tests and the benches (bench/ puts tests/ on sys.path): one copy of each."""
