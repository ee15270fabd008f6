"""govern: governs how integrations authenticate to the systems they connect."""

__version__ = "0.1.0"
