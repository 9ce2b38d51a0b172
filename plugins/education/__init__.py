"""The built-in education vertical."""
