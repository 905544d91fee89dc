"""`nosgrid image build-inference`: build the llama.cpp CPU inference image locally.

Registered on the ``image`` app as::

    app.command("build-inference")(build_inference)
"""

from __future__ import annotations

import time

import typer

from nosgrid.cli.output import console, print_json
from nosgrid.node.executor import inference_image


def build_inference(
    if_missing: bool = typer.Option(
        False, "--if-missing", help="Do nothing when the image exists already (fast no-op)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
) -> None:
    """Build localhost/nosgrid-llama:cpu (llama-cpp-python server; compiles once, ~5-20 min)."""
    started = time.monotonic()

    def progress(step: str, detail: str) -> None:
        if not as_json:
            console.print(f"[bold]{step}[/] {detail}", highlight=False)

    result = inference_image.build_llama_image(if_missing=if_missing, progress=progress)
    total = time.monotonic() - started
    if as_json:
        print_json(
            {
                "image": result.image,
                "built": result.built,
                "wheel": str(result.wheel),
                "wheel_seconds": round(result.wheel_seconds, 1),
                "install_seconds": round(result.install_seconds, 1),
                "import_seconds": round(result.import_seconds, 1),
                "total_seconds": round(total, 1),
            }
        )
        return
    if not result.built:
        console.print(f"{result.image} exists already (--if-missing)", highlight=False)
        return
    console.print(
        f"[green]built[/] {result.image} in {total:.1f} s "
        f"(wheel {result.wheel_seconds:.0f} s, install {result.install_seconds:.0f} s, "
        f"import {result.import_seconds:.0f} s)",
        highlight=False,
    )
