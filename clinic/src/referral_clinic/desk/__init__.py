"""The clinic's desk: a local web page where clinic staff read, print and handle referrals (issue 18 §3)."""
