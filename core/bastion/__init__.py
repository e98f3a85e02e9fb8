"""Bastion: a self-hosted, modular CRM platform.

Plugins import from :mod:`bastion.api` only; everything else here is internal.
"""

__version__ = "0.1.0"
