"""govern's domain core: value types and business rules. No Flask, no database, no vault."""
