"""Configuration as code: the governance.yaml schema, validation and the change plan. Pure; no database."""
