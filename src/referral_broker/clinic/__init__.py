"""`referral-clinic`: the program a clinic runs on its own machine to receive referrals.

It holds the clinic's keys, talks to the broker with signed requests, opens and checks sealed
envelopes, writes each referral durably and only then acknowledges it. It needs neither Postgres,
Redis nor Litestar: it imports only `domain` and `crypto` of this package.
"""
