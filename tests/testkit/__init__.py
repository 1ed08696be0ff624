"""Helpers shared by the tests: fixtures loaders, tiny models, test servers."""
