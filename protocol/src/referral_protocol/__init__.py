"""What the broker and a clinic's program both need, in one place: the types and rules of what crosses
the wire or lands in a clinic's files (payloads, notices, enrolment and key requests, validation, errors,
consent texts, categories, the age rule), and the cryptography both sides do (envelopes, padding, key ids
and fingerprints, key files, clinic identities, request signatures). No I/O framework is imported here.
"""
