"""The use cases — intake, dispatch, the clinic inbox and keys, the patient's rights, retention, operating
the broker — and the ports through which they reach what lies outside."""
