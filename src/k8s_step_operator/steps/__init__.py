"""KFP-v1-style resource, volume and snapshot steps."""
