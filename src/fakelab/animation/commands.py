"""CLI commands of the animation pillar."""


def register(subparsers) -> None:
    """Add the animation subcommands to the `fakelab` parser."""
