"""The built-in security vertical."""
