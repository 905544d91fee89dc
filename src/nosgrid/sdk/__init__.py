"""The nosgrid SDK: ``Client`` (sync), ``AsyncClient``, and keypair helpers."""

from nosgrid.sdk.client import AsyncClient, Client, default_url
from nosgrid.sdk.wallet import default_keypair_path, load_keypair, new_keypair, save_keypair

__all__ = ["AsyncClient", "Client", "default_keypair_path", "default_url", "load_keypair",
           "new_keypair", "save_keypair"]
