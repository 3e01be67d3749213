"""Versioned configuration packs (feature, detector, universe, risk) and their ``config_hash``."""
