"""nosgrid.coordinator."""
