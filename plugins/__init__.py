"""Built-in verticals, each a plugin discovered through the ``vkit.plugins`` entry points."""
