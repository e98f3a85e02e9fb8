"""Bastion's default theme: templates/ and static/ beside this file."""

label = "Default"
