"""The agent console: server-rendered pages for the people who work the tickets and take the calls."""
