"""mailet-mta: a mail server on Twisted with a James-style matcher/mailet pipeline."""

__version__ = "0.1.0"
