"""nosgrid.cli."""
