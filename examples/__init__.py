"""Example apps for Pounce."""
