"""The hardware probe and which policy tiers this device can run."""
