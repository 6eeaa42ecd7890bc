"""All cryptography of the product. Nothing else imports nacl or cryptography directly."""
