"""The error for settings that cannot be used, apart from the settings' models so that
the command line can catch it without loading them."""


class ConfigError(Exception):
    """The settings cannot be used; the message names the key and never its value."""
