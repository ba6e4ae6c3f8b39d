"""Sensors: new landing files become partitions and runs; automation rebuilds the global steps."""

from sensors.automation import automation_sensor
from sensors.landing import landing_sensor

__all__ = ["automation_sensor", "landing_sensor"]
