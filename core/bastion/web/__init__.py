"""The core's blueprints and request plumbing."""
