"""Attachments are served only as downloads, with generated names, never rendered as pages."""

import pytest

from centrala.core.blobs import BlobStore
from centrala.core.settings import get_settings
from centrala.tickets.models import Attachment
from tests.factories import make_agent, make_interaction, make_ticket


@pytest.fixture()
def auth(session):
    _agent, token = make_agent(session, email="eva@centrala.test")
    return {"Authorization": f"Bearer {token}"}


def _attach(session, *, filename: str, content_type: str, data: bytes) -> Attachment:
    interaction = make_interaction(session, ticket=make_ticket(session))
    attachment = Attachment(
        filename=filename,
        content_type=content_type,
        size=len(data),
        sha256=BlobStore(get_settings().blob_dir).put(data),
    )
    interaction.attachments.append(attachment)
    session.flush()
    return attachment


def test_html_attachment_is_downloaded_as_opaque_bytes_under_a_generated_name(client, session, auth):
    payload = b"<script>alert(document.cookie)</script>"
    attachment = _attach(
        session, filename='"><img src=x onerror=alert(1)>.html', content_type="text/html", data=payload
    )
    response = client.get(f"/api/v1/attachments/{attachment.id}", headers=auth)
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["content-type"] == "application/octet-stream"
    assert (
        response.headers["content-disposition"] == f'attachment; filename="attachment-{attachment.id}.html"'
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


def test_raster_image_keeps_its_type_for_inline_display(client, session, auth):
    attachment = _attach(session, filename="logo.png", content_type="image/png", data=b"\x89PNG\r\n")
    response = client.get(f"/api/v1/attachments/{attachment.id}", headers=auth)
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith("attachment;")


def test_svg_is_not_served_as_an_image(client, session, auth):
    attachment = _attach(
        session, filename="x.svg", content_type="image/svg+xml", data=b"<svg onload=alert(1)/>"
    )
    response = client.get(f"/api/v1/attachments/{attachment.id}", headers=auth)
    assert response.headers["content-type"] == "application/octet-stream"


def test_missing_attachment_is_404_and_requires_a_token(client, session, auth):
    assert client.get("/api/v1/attachments/999999", headers=auth).status_code == 404
    assert client.get("/api/v1/attachments/1").status_code == 401
