"""Salesforce metadata (DX source format and metadata API format) mapped onto the audit model."""
