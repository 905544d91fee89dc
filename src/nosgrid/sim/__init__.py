"""nosgrid.sim."""
