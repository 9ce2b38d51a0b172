"""The built-in recommendation vertical."""
