"""`nosgrid image build-inference`: build the llama.cpp CPU inference image locally.

Registered on the ``image`` app as::

    app.command("build-inference")(build_inference)

``up --model`` and ``deploy`` call :func:`ensure_inference_image`, which builds it on
first use with the same progress display: one line per step, its elapsed time and what
is left of its estimate (the wheel compile takes minutes once, then it is cached).
"""

from __future__ import annotations

import time

import typer
from rich.progress import (
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from nosgrid.cli.output import console, print_json
from nosgrid.node.executor import inference_image
from nosgrid.node.executor.images import image_exists

#: each step of ``build_llama_image`` as the display names it
STEPS = {"wheel": f"compile llama-cpp-python {inference_image.LLAMA_CPP_VERSION}",
         "rootfs": "Debian rootfs (debootstrap)", "install": "install the server",
         "import": "podman import"}


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class _Left(ProgressColumn):
    """What is left of a step's estimate ("cached" when it has none)."""

    def render(self, task: Task) -> Text:
        estimate = float(task.fields.get("estimate", 0.0))
        if task.finished:
            return Text("done", style="green")
        if estimate <= 0:
            return Text("cached", style="green")
        left = estimate - (task.elapsed or 0.0)
        if left <= 0:
            return Text("longer than estimated (a busy machine)", style="yellow")
        return Text(f"~{_duration(left)} left", style="cyan")


def build_with_progress(*, if_missing: bool = False) -> inference_image.InferenceImageBuild:
    """Build the image, showing each step with its elapsed time and estimate.

    Example::

        build_with_progress(if_missing=True)
    """
    estimate = inference_image.build_estimate()
    if if_missing and image_exists(inference_image.LLAMA_IMAGE):
        return inference_image.build_llama_image(if_missing=True)
    why = ("compiles llama.cpp once" if estimate["wheel"] else "the compiled wheel is cached")
    console.print(f"building [bold]{inference_image.LLAMA_IMAGE}[/]: about "
                  f"{_duration(sum(estimate.values()))} ({why})", highlight=False)
    columns = (SpinnerColumn(finished_text="[green]✓[/]"), TextColumn("{task.description}"),
               TimeElapsedColumn(), _Left())
    with Progress(*columns, console=console) as progress:
        current: list[TaskID] = []

        def step(name: str, _detail: str) -> None:
            for task_id in current:
                progress.update(task_id, completed=1)
            seconds = estimate.get(name, 0.0)
            current[:] = [progress.add_task(STEPS.get(name, name), total=1, estimate=seconds)]

        result = inference_image.build_llama_image(if_missing=if_missing, progress=step)
        for task_id in current:
            progress.update(task_id, completed=1)
    return result


def ensure_inference_image() -> None:
    """Build the inference image if it is missing (first use of `up --model`, `deploy`)."""
    if not image_exists(inference_image.LLAMA_IMAGE):
        console.print(f"{inference_image.LLAMA_IMAGE} is not built yet; building it now "
                      "(once)", highlight=False)
        build_with_progress(if_missing=True)


def build_inference(
    if_missing: bool = typer.Option(
        False, "--if-missing", help="Do nothing when the image exists already (fast no-op)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
) -> None:
    """Build localhost/nosgrid-llama:cpu (llama-cpp-python server; compiles once, ~5 min)."""
    started = time.monotonic()
    if as_json:
        result = inference_image.build_llama_image(if_missing=if_missing)
    else:
        result = build_with_progress(if_missing=if_missing)
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
