"""The ``vkit`` command line (placeholder, replaced below)."""
from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="vkit")
def cli() -> None:
    """vkit: plugin-based video-AI toolkit."""


def main() -> None:
    cli()
