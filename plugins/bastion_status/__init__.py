"""System status: a page, a dashboard card and a command that tell operators how Bastion is."""
