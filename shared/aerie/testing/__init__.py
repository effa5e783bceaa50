"""Test support shared by the unit, service and end-to-end tiers."""
