"""The HTTP surface: one create_app() wiring controllers per audience."""
