"""E-mail protocol: parsing MIME bytes into ParsedEmail, threading tokens, composing and sending."""
