"""The built-in medical vertical."""
