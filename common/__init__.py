"""Shared by the ghpulse services: generated protos, configuration, logging, errors, clients."""
