"""`nosgrid image` commands: build the local test images and list what Podman has."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from nosgrid.cli.inference_image import build_inference
from nosgrid.cli.output import console, print_json
from nosgrid.node.executor import images

app = typer.Typer(
    help="Local container images (built here; no registry needed).", no_args_is_help=True
)


@app.command("build-test")
def build_test(
    if_missing: bool = typer.Option(
        False, "--if-missing", help="Build only the images that do not exist yet (fast no-op)."
    ),
) -> None:
    """Build localhost/nosgrid-busybox:test and localhost/nosgrid-python:test."""
    started = time.monotonic()
    for name in images.TEST_IMAGES:
        if if_missing and images.image_exists(name):
            continue
        console.print(f"building {name} …")
        images.build_test_images(names=(name,))
        console.print(f"[green]built[/] {name}")
    console.print(f"test images ready ({time.monotonic() - started:.1f} s)", highlight=False)


@app.command("build-ci")
def build_ci(
    if_missing: bool = typer.Option(
        False, "--if-missing", help="Do nothing when the image exists (fast no-op)."
    ),
) -> None:
    """Build localhost/nosgrid-ci:test, the default image of `nosgrid ci run` (Python, git,
    make, pip)."""
    if if_missing and images.image_exists(images.CI_IMAGE):
        console.print(f"{images.CI_IMAGE} exists", highlight=False)
        return
    started = time.monotonic()
    console.print(f"building {images.CI_IMAGE} …")
    images.build_ci_image()
    console.print(f"[green]built[/] {images.CI_IMAGE} ({time.monotonic() - started:.1f} s)",
                  highlight=False)


app.command("build-inference")(build_inference)


@app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the images Podman has on this node."""
    rows = images.list_images()
    if as_json:
        print_json([row.__dict__ for row in rows])
        return
    table = Table("id", "size", "created")
    table.add_column("image", no_wrap=True)
    for row in rows:
        table.add_row(row.image_id, f"{row.size_bytes / 1e6:.1f} MB", row.created, row.name)
    console.print(table)
