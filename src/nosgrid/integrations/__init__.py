"""nosgrid.integrations."""
