"""The rule catalogue. Importing this package registers every rule (govern.audit.registry)."""
from govern.audit.rules import access, privileges, network, identity, lifecycle, usage, configuration, behaviour  # noqa: F401
from govern.audit.rules import federation  # noqa: F401
