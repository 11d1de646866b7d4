"""One error tree for Centrala; ``app.py`` maps it to HTTP status codes in one place."""


class CentralaError(Exception):
    """Base of every error Centrala raises on purpose."""


class ConfigurationError(CentralaError):
    """The configuration is invalid or unsafe."""


class NotFoundError(CentralaError):
    """The requested object does not exist (or is not visible to the caller)."""


class InvalidInputError(CentralaError):
    """The input is malformed; retrying the same input will fail again."""


class AuthenticationError(CentralaError):
    """The caller is not who they claim to be."""


class PermissionDeniedError(CentralaError):
    """The caller is known but may not do this."""


class ConflictError(CentralaError):
    """The request conflicts with the current state."""


class TemporaryFailure(CentralaError):
    """A dependency is unavailable for now; the same request may succeed later."""


class MessageRejected(InvalidInputError):
    """An inbound message cannot be processed and is quarantined with this reason."""


class RepMailRejected(MessageRejected):
    """A rep's own mail that belongs on nobody's history: not from an agent, or to no customer of ours."""


class HeaderInjectionError(InvalidInputError):
    """A value for a header we generate contains CR, LF or another control character (CVE-2024-6923)."""


class DeliveryError(CentralaError):
    """Outbound mail was not delivered; ``smtp_code`` is the relay's reply code when it gave one."""

    def __init__(self, message: str, smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.smtp_code = smtp_code


class TransientDeliveryError(DeliveryError):
    """Delivery failed for now (4xx, connection error, timeout); the same message may go through later."""


class PermanentDeliveryError(DeliveryError):
    """Delivery was refused for good (5xx); sending the same message again will fail again."""
