"""The one error family of vkit (``vkit.registry.errors``: the bottom layer, so every package can use it).

Every message names the file, key, plugin or registry at fault and what was
expected; the CLI prints ``str(err)`` on one line and exits non-zero.

Example::

    raise ConfigError("train.epochs: expected a positive int, got -1")
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class VkitError(Exception):
    """Base class of every error vkit raises on purpose."""


class ConfigError(VkitError):
    """A config file, key or value is wrong."""


class PluginError(VkitError):
    """A plugin failed to import, raised in a hook, or clashed with another."""


class RegistryError(VkitError):
    """A component could not be registered or built."""


class DataError(VkitError):
    """An input file (video, scan, datalist) is missing, unreadable or malformed."""


class StoreError(VkitError):
    """The SQL store cannot be opened, migrated or written."""


class CheckpointError(VkitError):
    """A checkpoint is missing, unsafe (pickle) or does not match the model."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``.

    Example::

        >>> did_you_mean("epoch", ["epochs", "lr"])
        " (did you mean 'epochs'?)"
    """
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
