"""A client's record as clinicians see it, as consent (or break-glass) allows."""
