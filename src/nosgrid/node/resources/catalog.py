"""Models a newcomer can deploy by name: service jobs for the packaged SmolLM2.

``smollm2`` serves chat and completions; ``smollm2-embed`` runs the same GGUF in
llama.cpp's embedding mode (one server process does one or the other). The model file is
an ordinary HF resource mounted read-only (docs/inference.md): on a machine without a
hub, ``nosgrid up --model`` serves the packaged file from a local hub (``model_hub.py``).
"""

from __future__ import annotations

import copy
from typing import Any, Final

SMOLLM2_REPO: Final = "nosgrid/smollm2-135m-instruct-gguf"
SMOLLM2_FILE: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_IMAGE: Final = "localhost/nosgrid-llama:cpu"


def _llama_service(alias: str, *extra: str, n_ctx: int = 2048) -> dict[str, Any]:
    return {
        "version": "0.1",
        "type": "container",
        "meta": {"trigger": "cli", "description": f"{alias}: SmolLM2-135M-Instruct (GGUF) "
                 "behind an OpenAI-compatible API, llama.cpp on CPU"},
        "ops": [{
            "type": "container/run",
            "id": "llm",
            "args": {
                "image": LLAMA_IMAGE,
                "cmd": ["python3", "-m", "llama_cpp.server",
                        "--model", f"/models/smollm2/{SMOLLM2_FILE}",
                        "--model_alias", alias, "--host", "0.0.0.0", "--port", "8000",
                        "--n_ctx", str(n_ctx), "--n_threads", "2",
                        # queue concurrent requests; the default interrupts a running stream
                        "--interrupt_requests", "false", *extra],
                "resources": [{"type": "HF", "repo": SMOLLM2_REPO, "revision": "main",
                               "files": [SMOLLM2_FILE], "target": "/models/smollm2"}],
                "expose": [{"port": 8000, "type": "api", "health_checks": [{
                    "type": "http", "path": "/v1/models", "method": "GET",
                    "expected_status": 200, "continuous": True}]}],
            },
        }],
    }


_CATALOG: Final[dict[str, dict[str, Any]]] = {
    "smollm2": _llama_service("smollm2"),
    "smollm2-embed": _llama_service("smollm2-embed", "--embedding", "true", n_ctx=512),
}


def packaged_spec(model: str) -> dict[str, Any] | None:
    """The service job definition for a packaged model name, or None."""
    spec = _CATALOG.get(model)
    return None if spec is None else copy.deepcopy(spec)


def packaged_models() -> list[str]:
    return sorted(_CATALOG)
