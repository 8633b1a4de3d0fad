"""bipsync-partner: the server side of a Bipsync partner integration."""

__version__ = "0.1.0"
