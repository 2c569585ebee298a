"""Data handling: pair discovery, training datasets, the synthetic demo scene."""
