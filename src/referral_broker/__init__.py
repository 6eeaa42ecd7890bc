"""referral-broker: an encrypted brokerage between patients and private clinics."""
