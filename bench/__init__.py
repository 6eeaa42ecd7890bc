"""`make bench`: the referral broker measured against the limits of this machine (issue 7).

`python -m bench.run --help` for the knobs; `docs/performance.md` for the figures and what they mean.
"""
