"""nosgrid.node."""
