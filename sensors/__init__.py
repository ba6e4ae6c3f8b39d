"""Sensors: new landing files become partitions and runs; automation rebuilds the global steps."""

from sensors.landing import landing_sensor

__all__ = ["landing_sensor"]
