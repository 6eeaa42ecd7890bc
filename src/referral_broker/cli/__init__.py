"""The command-line programs of the broker."""
