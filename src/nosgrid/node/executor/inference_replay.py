"""The auditor's side of an inference audit: replay usage records under the reference model
(llama.cpp through llama-cpp-python) and score them, one batch at a time.

This module imports nothing of nosgrid and only the standard library at import time, so the
same file runs inside the ``localhost/nosgrid-llama:cpu`` image as the audit job's script
(``python3 inference_replay.py MODEL.gguf BATCH.json OUT.json``) and on a host that has
``llama_cpp`` importable (``bench/inference_audit.py``).

**Teacher-forced seeded replay.** For each record the auditor rebuilds the exact prompt the
replica saw (the GGUF's chat template for chat requests, llama-cpp-python's completion
prompt otherwise), builds the *same sampler chain* with the *same seed* (llama-cpp-python's
own ``_init_sampler``), evaluates the prompt, and then walks the claimed output: at each
position it draws the reference's pick from the reference logits and the seeded RNG, then
feeds the **claimed** token (not its own pick), so the next position is conditioned on the
claimed prefix and one divergence does not cascade (Token-DiFR's idea). A pick whose text
continues the claimed text is a match (this also follows the replica through a token
boundary the text alone cannot show); otherwise it is a mismatch and the claimed text's
next token is forced. Each draw advances the RNG exactly as the replica's did, so an honest
replica matches at every position but where floating-point noise flips a near tie.

The score per record is ``positions`` (tokens walked), ``mismatches``, the recount of
prompt and completion tokens, and ``stop_ok`` (the reference also ends there). The verdict
is a pure rule in ``nosgrid.core.verification.inference.judge_replay``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

#: sampler fields of a record's request, with llama-cpp-python's own defaults
SAMPLER_DEFAULTS: dict[str, float] = {
    "temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0,
    "frequency_penalty": 0.0, "presence_penalty": 0.0, "typical_p": 1.0,
}


def load_reference(model_path: str, *, n_threads: int = 2, n_batch: int = 512,
                   n_ctx: int = 2048) -> Any:
    """The reference engine: the model files the record claims, on this auditor."""
    from llama_cpp import Llama  # type: ignore[import-not-found]  # only on engines

    return Llama(model_path, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch,
                 verbose=False)


def _chat_prompt(llm: Any, messages: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
    """The tokens and stop strings of a chat request, as llama-cpp-python's server builds
    them from the GGUF's chat template."""
    from llama_cpp import llama_chat_format

    model = llm._model
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id])
    result = formatter(messages=messages)
    tokens = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                          special=True)
    stop = result.stop if isinstance(result.stop, list) else (
        [result.stop] if result.stop else [])
    return list(tokens), [str(s) for s in stop]


def _completion_prompt(llm: Any, prompt: str) -> list[int]:
    """The prompt tokens ``Llama.create_completion`` evaluates for a string prompt."""
    model = llm._model
    cls_id, sep_id = model.token_cls(), model.token_sep()
    bos = [cls_id if cls_id != -1 else llm.token_bos()]
    eos = [sep_id if sep_id != -1 else llm.token_eos()]
    if not model.add_bos_token() or bos[:1] == [-1]:
        bos = []
    if not model.add_eos_token() and sep_id == -1:
        eos = []
    body = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) if prompt else []
    return bos + list(body) + eos


def prompt_of(llm: Any, record: dict[str, Any]) -> tuple[list[int], list[str]]:
    """(prompt tokens, stop strings) of a record's request."""
    req = record["request"]
    stops = req.get("stop") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    if record["kind"] == "chat":
        tokens, template_stops = _chat_prompt(llm, list(req["messages"]))
        return tokens, stops + template_stops
    prompt = req.get("prompt")
    if isinstance(prompt, list):
        prompt = "".join(str(p) for p in prompt)
    return _completion_prompt(llm, str(prompt or "")), stops


def _sampler(llm: Any, req: dict[str, Any], seed: int) -> Any:
    """llama-cpp-python's own sampler chain for these fields, seeded as the replica's was."""
    p = {k: req.get(k, v) for k, v in SAMPLER_DEFAULTS.items()}
    llm.set_seed(int(seed))
    return llm._init_sampler(
        top_k=int(p["top_k"]), top_p=float(p["top_p"]), min_p=float(p["min_p"]),
        typical_p=float(p["typical_p"]), temp=float(p["temperature"]),
        repeat_penalty=float(p["repeat_penalty"]),
        frequency_penalty=float(p["frequency_penalty"]),
        presence_penalty=float(p["presence_penalty"]))


def _piece(llm: Any, token: int, prev: list[int]) -> bytes:
    return bytes(llm.detokenize([token], prev_tokens=prev[-8:]))


def _eog(llm: Any) -> Any:
    model = llm._model
    return model.token_is_eog if hasattr(model, "token_is_eog") else (
        lambda t: t == llm.token_eos())


def _stop_ok(llm: Any, pick: int, piece: bytes, stops: list[str]) -> bool:
    return bool(_eog(llm)(pick)) or any(
        s and (s.encode().startswith(piece) or piece.startswith(s.encode())) for s in stops)


def replay(llm: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Score one record (a ``UsageRecord`` as a dict) under ``llm``; see the module doc.

    The prompt is evaluated in one batch, as the replica did; the claimed tokens are then
    evaluated one at a time, again as the replica generated them. (A single batched pass
    over prompt + claimed text would be cheaper, but llama.cpp's batched CPU kernels give
    logits different enough from the incremental ones to flip picks at honest positions:
    measured in docs/verification.md, so it is not used.)
    """
    req = record["request"]
    claimed = str(record["output"].get("text") or "").encode("utf-8")
    finish = record["output"].get("finish_reason")
    prompt, stops = prompt_of(llm, record)
    max_tokens = int(req.get("max_tokens") or 16)
    sampler = _sampler(llm, req, int(record["seed"]))
    llm.reset()
    llm.eval(prompt)
    prev = list(prompt)
    pos = positions = mismatches = 0
    eog = _eog(llm)
    while pos < len(claimed) and positions < max_tokens + 64:
        pick = int(sampler.sample(llm._ctx, -1))
        piece = b"" if eog(pick) else _piece(llm, pick, prev)
        if piece and claimed.startswith(piece, pos):
            token = pick  # the reference's seeded pick continues the claimed text
        else:
            mismatches += 1  # force the claimed text's next token (teacher forcing)
            rest = llm.tokenize(claimed[pos:], add_bos=False, special=False)
            if not rest:
                break
            token = rest[0]
            piece = _piece(llm, token, prev)
            if not piece:
                break
        pos += len(piece)
        positions += 1
        llm.eval([token])
        prev.append(token)
    stop_ok = True
    if finish == "stop":
        pick = int(sampler.sample(llm._ctx, -1))
        piece = b"" if eog(pick) else _piece(llm, pick, prev)
        stop_ok = _stop_ok(llm, pick, piece, stops)
    elif finish == "length":
        stop_ok = positions >= max_tokens
    return {"positions": positions, "mismatches": mismatches, "prompt_tokens": len(prompt),
            "completion_tokens": positions, "stop_ok": bool(stop_ok)}


def replay_batch(model_path: str, records: list[dict[str, Any]], **engine: Any
                 ) -> list[dict[str, Any]]:
    """Replay a batch under one loaded reference; each result names its record's hash."""
    llm = load_reference(model_path, **engine)
    out = []
    for rec in records:
        started = time.process_time()
        try:
            score = replay(llm, rec)
        except Exception as exc:  # one bad record must not sink the batch
            score = {"error": f"{type(exc).__name__}: {exc}"}
        score["hash"] = rec.get("hash", "")
        score["cpu_s"] = round(time.process_time() - started, 4)
        out.append(score)
    return out


def main(argv: list[str]) -> int:
    """``inference_replay.py MODEL.gguf BATCH.json OUT.json``: the audit job's command."""
    if len(argv) != 3:
        print("usage: inference_replay.py MODEL.gguf BATCH.json OUT.json", file=sys.stderr)
        return 2
    model, batch, out = argv
    with open(batch, encoding="utf-8") as fh:
        records = json.load(fh)
    results = replay_batch(model, records)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(results, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
