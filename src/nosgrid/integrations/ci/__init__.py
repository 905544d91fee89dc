"""``nosgrid ci``: GitHub Actions workflows run as nosgrid jobs, one per workflow job.

The pure parts (loading with line numbers, the model and its JSON Schema, expressions,
matrix expansion, the ``needs`` graph, the plan) touch no network; ``run`` drives the plan
through the SDK; ``runner_main`` is the step runner shipped into each job's container.
"""
