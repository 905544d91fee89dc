"""nosgrid.sdk."""
