"""Contacts from a CSV file: normalised, matched to the contacts they already are, bad rows reported with
their row number and reason while the rest goes in."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from centrala.cli import app
from centrala.core.db import session_scope
from centrala.core.errors import InvalidInputError
from centrala.tickets.contact_import import ContactCsv, ImportOutcome, import_contact
from centrala.tickets.models import Contact, ContactEmail, Organization
from tests.factories import NOW, make_contact


def _rows(text: str):
    return list(ContactCsv(io.StringIO(text)))


def _import(session, text: str) -> list[ImportOutcome | str]:
    outcomes: list[ImportOutcome | str] = []
    for row in _rows(text):
        try:
            with session.begin_nested():
                outcomes.append(import_contact(session=session, row=row, region="CZ", now=NOW))
        except InvalidInputError as error:
            outcomes.append(f"row {row.number}: {error}")
    return outcomes


def test_rows_become_normalised_contacts_with_organisation_and_segment(session):
    outcomes = _import(
        session,
        "Name;E-mail;Phone;Organisation;Segment\n"
        "Jana Nováková;Jana.Novakova@Example.CZ, jana@firma.cz;601 123 456;Firma s.r.o.;vip\n"
        "Petr Svoboda;petr@firma.cz;+420 602 000 111;firma s.r.o.;b2b\n",
    )
    assert outcomes == [ImportOutcome.CREATED, ImportOutcome.CREATED]
    jana = session.scalar(select(Contact).join(ContactEmail).where(ContactEmail.address == "jana@firma.cz"))
    assert [e.address for e in jana.emails] == ["jana.novakova@example.cz", "jana@firma.cz"]
    assert [p.number for p in jana.phones] == ["+420601123456"]
    assert jana.segment == "vip" and jana.organization.name == "Firma s.r.o."
    petr = session.scalar(select(Contact).join(ContactEmail).where(ContactEmail.address == "petr@firma.cz"))
    assert petr.organization_id == jana.organization_id, "organisations are matched by name, any case"
    assert session.scalar(select(func.count()).select_from(Organization)) == 1


def test_existing_contacts_are_updated_by_email_or_phone_not_duplicated(session):
    by_mail = make_contact(session, name="J. Nováková", emails=["jana@example.cz"])
    by_phone = make_contact(session, name="", emails=[], phones=["+420777888999"])
    by_phone.is_provisional = True
    same = make_contact(session, name="Eva Malá", emails=["eva@example.cz"], phones=["+420603000000"])
    session.flush()
    before = session.scalar(select(func.count()).select_from(Contact))

    outcomes = _import(
        session,
        "name,email,phone,segment\n"
        "Jana Nováková,JANA@example.cz,+420 601 123 456,vip\n"
        "Karel Veselý,,777 888 999,\n"
        "Eva Malá,eva@example.cz,603000000,\n",
    )

    assert outcomes == [ImportOutcome.UPDATED, ImportOutcome.UPDATED, ImportOutcome.UNCHANGED]
    assert session.scalar(select(func.count()).select_from(Contact)) == before
    assert by_mail.name == "Jana Nováková" and by_mail.segment == "vip"
    assert [p.number for p in by_mail.phones] == ["+420601123456"]
    assert by_phone.name == "Karel Veselý" and not by_phone.is_provisional
    assert same.updated_at == NOW


def test_bad_rows_are_rejected_with_their_row_number_and_reason_and_the_rest_goes_in(session):
    make_contact(session, emails=["a@example.cz"])
    make_contact(session, emails=["b@example.cz"])
    make_contact(session, emails=["c@example.cz"], phones=["+420604000000"])
    make_contact(session, emails=["d@example.cz"], phones=["+420604000000"])
    outcomes = _import(
        session,
        "name,email,phone\n"
        "Dobrý,ok@example.cz,\n"
        "Bez adresy,,\n"
        "Špatná adresa,jana@@example.cz,\n"
        "Špatné číslo,,12\n"
        "Dvě osoby,a@example.cz;b@example.cz,\n"
        "Sdílená linka,,604 000 000\n"
        "Dobrý taky,ok2@example.cz,\n",
    )
    assert outcomes[0] is ImportOutcome.CREATED and outcomes[-1] is ImportOutcome.CREATED
    assert outcomes[1] == "row 3: no e-mail address or phone number to recognise the contact by"
    assert outcomes[2].startswith("row 4: e-mail address 'jana@@example.cz'")
    assert outcomes[3].startswith("row 5: phone number '12'")
    assert outcomes[4].startswith("row 6: the e-mail addresses belong to different contacts")
    assert outcomes[5].startswith("row 7: the phone number is shared by several contacts")


def test_a_file_without_an_email_or_phone_column_is_refused():
    with pytest.raises(InvalidInputError, match="email or a phone column"):
        ContactCsv(io.StringIO("jméno,firma\nJana,ACME\n"))


def test_the_command_reports_rejected_rows_to_stderr_and_a_file(committed_db, tmp_path):
    source = tmp_path / "contacts.csv"
    source.write_text(
        "\ufeffname,email,phone,organisation\n"
        "Jana Nováková,jana@example.cz,601123456,ACME\n"
        "Nikdo,,\n"
        "Petr,petr@@example.cz,,\n",
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.csv"
    result = CliRunner().invoke(app, ["contacts", "import", str(source), "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    assert "created 1, updated 0, unchanged 0, rejected 2" in result.stdout
    assert "row 3: no e-mail address or phone number" in result.stderr
    assert "row 4: e-mail address 'petr@@example.cz'" in result.stderr
    with rejects.open(encoding="utf-8", newline="") as handle:
        written = list(csv.reader(handle))
    assert written[0] == ["row", "reason", "name", "email", "phone", "organisation"]
    assert [line[0] for line in written[1:]] == ["3", "4"] and written[2][3] == "petr@@example.cz"

    again = CliRunner().invoke(app, ["contacts", "import", str(source)])
    assert "created 0, updated 0, unchanged 1, rejected 2" in again.stdout
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 1
