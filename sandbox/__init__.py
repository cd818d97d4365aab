"""Simulated peers (stateful SOAP servers) so the bus runs and is tested with no real peer."""
