"""The broker's own cryptography (its keys, the contact vault, tokens); what clinics share with it is in
`referral_protocol`. Nothing else imports nacl or cryptography directly."""
