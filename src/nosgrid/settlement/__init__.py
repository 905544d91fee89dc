"""nosgrid.settlement."""
