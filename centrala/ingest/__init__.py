"""The edges that accept input: SMTP server, raw ledgers, and the processing of raw records into the domain."""
