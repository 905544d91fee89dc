"""nosgrid.core."""
