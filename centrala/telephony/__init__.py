"""Telephony protocol layer: Twilio signatures, webhook events, the call state machine, TwiML and REST client."""
