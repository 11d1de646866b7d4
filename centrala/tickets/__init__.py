"""The domain: contacts and organisations, tickets, the interaction timeline, agents."""
