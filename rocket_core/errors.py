"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class RocketError(Exception):
    """Bad input (spec, config file, layer map, checkpoint, dataset, plugin) with a message naming the fix."""
