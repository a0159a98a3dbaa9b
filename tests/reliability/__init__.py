"""Reliability and security: bad input, abuse, faults; each with the answer faxgate gives."""
