"""nosgrid.node.executor."""
