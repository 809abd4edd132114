"""Adapters from concrete model objects to the `DenoiserAdapter` protocol."""
