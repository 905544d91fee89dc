"""nosgrid: an open, decentralized GPU compute marketplace."""

__version__ = "0.1.0"
