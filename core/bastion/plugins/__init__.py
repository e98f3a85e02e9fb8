"""The plugin platform: hook specifications, discovery, enabled state, isolated hook calls."""
