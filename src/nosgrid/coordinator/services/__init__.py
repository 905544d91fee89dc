"""nosgrid.coordinator.services."""
