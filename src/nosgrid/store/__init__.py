"""nosgrid.store."""
