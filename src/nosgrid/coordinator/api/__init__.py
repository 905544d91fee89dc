"""nosgrid.coordinator.api."""
