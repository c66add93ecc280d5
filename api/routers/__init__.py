"""One router per resource: search, documents, health, metrics."""
