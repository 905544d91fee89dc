"""The composite GitHub Action: its inputs, and the example workflow in its README."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from nosgrid.integrations.ci.model import parse_workflow
from nosgrid.integrations.ci.source import load_source

ACTION = Path(__file__).resolve().parents[2] / "src/nosgrid/integrations/ci/github-action"


def test_the_action_is_composite_with_the_documented_inputs() -> None:
    action = yaml.safe_load((ACTION / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    inputs = action["inputs"]
    for name in ("file", "coordinator-url", "keypair"):
        assert inputs[name]["required"] is True
    assert inputs["market"]["required"] is False
    script = action["runs"]["steps"][-1]["run"]
    assert "nosgrid \"${args[@]}\"" in script and "ci run" in script
    assert 'rm -f "$keyfile"' in script  # the keypair does not outlive the step
    # inputs reach the script through env, never spliced into the shell text
    assert "${{ inputs.keypair }}" not in script and "${{ inputs.file }}" not in script


def test_the_readme_example_is_a_valid_workflow() -> None:
    text = (ACTION / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert example is not None
    wf = parse_workflow(load_source(example.group(1), "nosgrid.yml"))
    step = wf.jobs["nosgrid"].steps[1]
    assert step.uses and step.uses.endswith("github-action@main")
    assert set(step.with_ or {}) >= {"file", "coordinator-url", "keypair"}
