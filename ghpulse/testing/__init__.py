"""Test doubles that ship with ghpulse for tests, the demo and benchmarks: a fake GitHub REST API
(`fake_github`) serving generated or bundled pull request data."""
