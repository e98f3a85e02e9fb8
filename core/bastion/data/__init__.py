"""The metadata-driven data model: definitions, their tables, and the one record service."""
