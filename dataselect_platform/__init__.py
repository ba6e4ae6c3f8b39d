"""The platform's wiring: the Dagster code location, the build runner and the dataselect command."""
