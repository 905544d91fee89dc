"""LangChain models for nosgrid: thin configurations of ``langchain-openai``'s classes.

``ChatNosgrid`` and ``NosgridEmbeddings`` are ``ChatOpenAI`` and ``OpenAIEmbeddings``
pointed at the coordinator's OpenAI-compatible gateway, so streaming, tool-calling shapes
and callbacks behave exactly as LangChain users expect. They read the same settings as
the CLI: ``NOSGRID_URL`` (the coordinator, default ``http://127.0.0.1:8700``) and
``NOSGRID_API_KEY`` (a key from ``nosgrid keys create``); explicit arguments win.

Example::

    from nosgrid.integrations.langchain import ChatNosgrid
    llm = ChatNosgrid(model="smollm2", max_tokens=64)
    print(llm.invoke("What is the capital of France?").content)
    for chunk in llm.stream("Count to five"):
        print(chunk.content, end="")

Plain ``ChatOpenAI(base_url=f"{NOSGRID_URL}/openai/v1", api_key=KEY)`` works the same.
LangChain is an optional extra: ``pip install 'nosgrid[langchain]'``.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import model_validator

from nosgrid.core.errors import InvalidInput
from nosgrid.sdk.client import default_url

try:
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
except ImportError as exc:  # an optional extra: the base install has no LangChain
    raise ImportError("nosgrid.integrations.langchain needs the langchain extra: "
                      "pip install 'nosgrid[langchain]'", name=exc.name) from exc

GATEWAY_PATH = "/openai/v1"


def gateway_base_url(url: str | None = None) -> str:
    """The gateway's OpenAI base URL for a coordinator URL (default ``NOSGRID_URL``)."""
    return (url or default_url()).rstrip("/") + GATEWAY_PATH


def api_key_from_env() -> str:
    key = os.environ.get("NOSGRID_API_KEY", "")
    if not key:
        raise InvalidInput("set NOSGRID_API_KEY to a key from `nosgrid keys create`, or pass "
                           "api_key=")
    return key


def _fill(values: Any, default_model: str) -> Any:
    if not isinstance(values, dict):
        return values
    values = dict(values)
    if not any(k in values for k in ("base_url", "openai_api_base")):
        values["base_url"] = gateway_base_url()
    if not any(k in values for k in ("api_key", "openai_api_key")):
        values["api_key"] = api_key_from_env()
    if not any(k in values for k in ("model", "model_name")):
        values["model"] = default_model
    return values


class ChatNosgrid(ChatOpenAI):
    """``ChatOpenAI`` on the nosgrid gateway (default model ``smollm2``)."""

    @model_validator(mode="before")
    @classmethod
    def _nosgrid_settings(cls, values: Any) -> Any:
        return _fill(values, "smollm2")

    @property
    def _llm_type(self) -> str:
        return "nosgrid-chat"


class NosgridEmbeddings(OpenAIEmbeddings):
    """``OpenAIEmbeddings`` on the nosgrid gateway (default model ``smollm2-embed``).

    Texts are sent as strings: OpenAI's tiktoken length check is off, since the models
    behind the gateway have their own tokenizers (and it would download an encoding).
    """

    @model_validator(mode="before")
    @classmethod
    def _nosgrid_settings(cls, values: Any) -> Any:
        values = _fill(values, "smollm2-embed")
        if isinstance(values, dict):
            values.setdefault("check_embedding_ctx_length", False)
        return values


__all__ = ["ChatNosgrid", "NosgridEmbeddings", "api_key_from_env", "gateway_base_url"]
