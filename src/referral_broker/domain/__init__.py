"""Types, rules and state machines of the product. No I/O happens here."""
