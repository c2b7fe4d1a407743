"""Stevedore: a private container registry and index that an organization runs for itself."""
