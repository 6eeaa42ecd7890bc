"""`referral-clinic`: the program a clinic runs on its own machine to receive referrals.

It holds the clinic's keys, talks to the broker with signed requests, opens and checks sealed
envelopes, writes each referral durably and only then acknowledges it. It needs neither Postgres,
Redis nor Litestar: of this repository it imports only `referral_protocol`.
"""

import sys

# httpx imports its own command-line client (click, pygments and rich's syntax and tables) whenever it is
# imported, and gives up on it quietly when that import fails: about 55 ms of every run of this tool,
# which never uses it. A None in sys.modules makes that one import fail. Only httpx's own `httpx`
# command needs the module, and it runs in a process of its own.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "not importable"
