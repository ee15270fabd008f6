"""The HTTP edge: thin views that parse, call a service, and map domain errors to problem+json."""
