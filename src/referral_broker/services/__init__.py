"""The use cases: intake, dispatch, the clinic inbox, enrolment, reconciliation."""
