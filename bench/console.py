"""The console benchmark: page latency of the agent console with 200,000 tickets, for an agent and a supervisor.

    python -m bench.console [--tickets 200000] [--contacts 40000] [--requests 200] [--seed 1] [--database-url URL]

Builds a scratch database (a SQLite file in a temporary folder, or a database ``bench_console_<pid>_<hex>`` on
the PostgreSQL server of ``--database-url`` or ``CENTRALA_DATABASE_URL``), migrated to head and filled in bulk
with a contact centre's history: organisations, contacts (some with organisations, some very busy), six queues,
thirty agents with queue memberships, tickets over two years (mostly closed, a few thousand open, pending or
new), two to six interactions each (e-mails both ways, notes, calls), SLA clocks on every ticket (running ones on
open tickets, due around now). Then it starts the web process (``centrala web``), signs an agent (two queues)
and a supervisor in with session rows, and requests the console's pages over HTTP, ``--requests`` times each
per role. Prints one JSON line to stdout; progress goes to stderr. The scratch database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

QUEUES = (("Support", 40), ("Billing", 18), ("Returns", 15), ("Complaints", 10), ("Hotline", 8), ("Sales", 7))
NO_QUEUE_SHARE = 0.02
AGENTS = 28  # plus a supervisor and an admin
ORGANIZATIONS = 400
BUSY_CONTACTS = 200  # they open a tenth of all tickets
FIRST = (
    "Jan",
    "Petr",
    "Jana",
    "Eva",
    "Tomáš",
    "Lucie",
    "Martin",
    "Kateřina",
    "Anna",
    "Piotr",
    "Agnieszka",
    "Tomasz",
    "Olena",
    "Ірина",
    "Andrii",
    "John",
    "Sarah",
    "Zoë",
    "Marek",
    "Zuzana",
    "Pavel",
    "Hana",
)
LAST = (
    "Novák",
    "Svobodová",
    "Dvořák",
    "Černá",
    "Procházka",
    "Kučerová",
    "Veselý",
    "Horáková",
    "Kowalski",
    "Nowak",
    "Wiśniewska",
    "Shevchenko",
    "Коваленко",
    "Smith",
    "Brown",
    "Krejčí",
    "Marková",
    "Beneš",
)
SUBJECTS = (
    "Zásilka nedorazila",
    "Faktura za březen nesedí",
    "Reklamace poškozeného zboží",
    "Nejde mi přihlášení",
    "Vrácení peněz za objednávku",
    "Prosím o zpětné zavolání",
    "Změna dodací adresy",
    "Dwa razy pobrano opłatę",
    "Przesyłka uszkodzona",
    "Не можу увійти до акаунту",
    "Invoice address is wrong",
    "Parcel still not delivered",
    "Cancel my subscription",
    "Wrong item in the box",
    "Dotaz na záruku",
    "Upgrade tarifu",
)
SENTENCES = (
    "Dobrý den, objednávka stále nedorazila a sledování zásilky se dva dny nehýbe.",
    "Na faktuře je špatná adresa firmy, prosím o opravenou fakturu.",
    "Zboží přišlo poškozené, přikládám fotografie a žádám o reklamaci.",
    "Nemohu se přihlásit do účtu, heslo nefunguje ani po obnovení.",
    "Prosím o vrácení peněz na účet, ze kterého jsem platil.",
    "Zavolejte mi prosím odpoledne, ráno jsem v práci.",
    "Dzień dobry, przesyłka dotarła uszkodzona, proszę o zwrot pieniędzy.",
    "Opłata została pobrana dwa razy, proszę o wyjaśnienie.",
    "Добрий день, не можу увійти до свого облікового запису.",
    "Hello, the parcel has not arrived yet; the tracking page has not changed since Monday.",
    "The invoice shows the wrong VAT number, could you issue a corrected one?",
    "I would like to cancel the subscription at the end of this month.",
    "There was a different item in the box than the one I ordered.",
    "Could you tell me how long the warranty on the device is?",
)
REPLIES = (
    "Dobrý den, děkujeme za zprávu. Zásilku jsme u dopravce urgovali a ozveme se do zítřka.",
    "Opravenou fakturu najdete v příloze, omlouváme se za komplikace.",
    "Reklamaci jsme přijali, kurýr si zboží vyzvedne v pondělí.",
    "Heslo jsme vám resetovali, odkaz pro nastavení nového přišel e-mailem.",
    "Dzień dobry, zwrot został zlecony i pojawi się na koncie w ciągu 3 dni.",
    "Hello, we have asked the carrier to look for the parcel and will write again tomorrow.",
    "The corrected invoice is attached; sorry for the trouble.",
)
NOTES = (
    "Volal zákazník, chce odpověď do pátku.",
    "Dopravce potvrdil ztrátu, posíláme novou zásilku.",
    "Checked the payment gateway: two captures, refund one.",
    "VIP customer, keep the team lead in copy.",
)
SEARCH_WORDS = ("faktura", "reklamace", "heslo", "parcel", "przesyłka")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scratch_database(server_url: str | None, folder: Path) -> tuple[str, str | None]:
    """``(url, admin_url)`` of an empty database; admin_url is set for PostgreSQL (to drop it afterwards)."""
    if not server_url:
        return f"sqlite:///{folder / 'console-bench.db'}", None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_console_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False), server_url


def _drop(url: str, admin_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


# --- the data set ---------------------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What the measurement needs to know about the data set, and how much of it there is."""

    counts: Counter[str] = field(default_factory=Counter)
    ticket_queue: list[int | None] = field(default_factory=list)  # index: ticket id - 1
    ticket_open: list[bool] = field(default_factory=list)
    queue_ids: dict[str, int] = field(default_factory=dict)
    agent_queues: dict[int, list[int]] = field(default_factory=dict)
    busy_contacts: list[int] = field(default_factory=list)  # busiest first
    big_organization: int = 0
    agent_id: int = 0
    supervisor_id: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


def _status_for(rng: random.Random, age_days: float) -> str:
    """Young tickets are mostly being worked; old ones are closed, with a few forgotten ones still open."""
    if age_days < 2:
        table = (("new", 30), ("open", 40), ("pending", 15), ("third_party", 5), ("resolved", 10))
    elif age_days < 14:
        table = (
            ("new", 2),
            ("open", 23),
            ("pending", 15),
            ("third_party", 5),
            ("resolved", 30),
            ("closed", 25),
        )
    elif age_days < 60:
        table = (("open", 3), ("pending", 3), ("resolved", 4), ("closed", 90))
    else:
        table = (("open", 3), ("pending", 2), ("closed", 995))
    names, weights = zip(*table, strict=True)
    return rng.choices(names, weights)[0]


def _fill(engine, *, tickets: int, contacts: int, seed: int, now: datetime) -> Seeded:
    """Insert the data set in bulk, in transactions of a few tens of thousands of tickets."""
    from sqlalchemy import insert
    from sqlalchemy.exc import DBAPIError

    from centrala.core.db import is_postgresql
    from centrala.tickets.agents import hash_token
    from centrala.tickets.models import (
        Agent,
        AgentQueue,
        BusinessCalendarRow,
        Contact,
        ContactEmail,
        ContactPhone,
        CsatSurvey,
        Organization,
        OrganizationDomain,
        Queue,
        SlaPolicy,
    )
    from centrala.tickets.phone_models import Call

    rng = random.Random(seed)
    postgresql = is_postgresql(engine)
    seeded = Seeded()
    batch = 10_000

    def bulk(connection, table, rows: list[dict]) -> None:
        seeded.counts[table.name] += len(rows)
        for start in range(0, len(rows), batch):
            connection.execute(insert(table), rows[start : start + batch])

    def big(connection, table_name: str, rows: list[dict]) -> None:
        """The large tables: COPY on PostgreSQL, executemany on SQLite (through the FTS5 triggers)."""
        if not rows:
            return
        seeded.counts[table_name] += len(rows)
        if postgresql:
            columns = list(rows[0])
            statement = f"COPY {table_name} ({', '.join(columns)}) FROM STDIN"
            with connection.connection.dbapi_connection.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(
                        [json.dumps(row[c]) if isinstance(row[c], list) else row[c] for c in columns]
                    )
        else:
            from centrala.schema import metadata

            table = metadata.tables[table_name]
            for start in range(0, len(rows), batch):
                connection.execute(insert(table), rows[start : start + batch])

    # People: organisations (a few big customers, many small ones), contacts, agents and their queues.
    queue_names = [name for name, _ in QUEUES]
    queue_weights = [weight for _, weight in QUEUES]
    with engine.begin() as connection:
        calendar = connection.execute(
            insert(BusinessCalendarRow.__table__).returning(BusinessCalendarRow.id),
            {
                "name": "Office",
                "timezone": "Europe/Prague",
                "weekly_hours": {str(day): [["08:00", "18:00"]] for day in range(5)},
                "holidays_country": "CZ",
                "extra_holidays": [],
                "updated_at": now,
            },
        ).scalar_one()
        policy_id = connection.execute(
            insert(SlaPolicy.__table__).returning(SlaPolicy.id),
            {
                "name": "Default",
                "precedence": 100,
                "is_default": True,
                "is_active": True,
                "calendar_id": calendar,
                "targets": {
                    "default": {"first_response": 240, "next_response": 480, "resolution": 2400},
                    "urgent": {"first_response": 60, "next_response": 120, "resolution": 480},
                },
                "warn_before_minutes": 30,
                "escalations": [],
                "calls_count_as_response": True,
                "updated_at": now,
            },
        ).scalar_one()
        bulk(
            connection,
            Organization.__table__,
            [
                {
                    "id": i,
                    "name": f"Firma {i} s.r.o.",
                    "kind": "customer" if i % 10 else "partner",
                    "created_at": now,
                }
                for i in range(1, ORGANIZATIONS + 1)
            ],
        )
        bulk(
            connection,
            OrganizationDomain.__table__,
            [
                {"id": i, "organization_id": i, "domain": f"firma{i}.example"}
                for i in range(1, ORGANIZATIONS + 1)
            ],
        )
        organization_weights = [1 / k for k in range(1, ORGANIZATIONS + 1)]
        contact_rows, email_rows, phone_rows = [], [], []
        for i in range(1, contacts + 1):
            organization = (
                rng.choices(range(1, ORGANIZATIONS + 1), organization_weights)[0]
                if rng.random() < 0.3
                else None
            )
            created = now - timedelta(days=rng.uniform(0, 900))
            contact_rows.append(
                {
                    "id": i,
                    "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                    "organization_id": organization,
                    "language": rng.choice(("cs", "cs", "cs", "pl", "uk", "en")),
                    "is_provisional": False,
                    "segment": rng.choice(("vip", "b2b")) if organization and rng.random() < 0.2 else None,
                    "is_org_manager": bool(organization) and rng.random() < 0.05,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            domain = (
                f"firma{organization}.example"
                if organization
                else rng.choice(("mail.example", "post.example"))
            )
            email_rows.append({"id": i, "contact_id": i, "address": f"contact{i}@{domain}"})
            if rng.random() < 0.4:
                phone_rows.append({"id": len(phone_rows) + 1, "contact_id": i, "number": f"+4206{i:08d}"})
        bulk(connection, Contact.__table__, contact_rows)
        bulk(connection, ContactEmail.__table__, email_rows)
        bulk(connection, ContactPhone.__table__, phone_rows)
        contact_phone = {row["contact_id"]: row["number"] for row in phone_rows}
        agent_rows = [
            {
                "id": i,
                "email": f"agent{i}@centrala.example",
                "name": f"{rng.choice(FIRST)} {rng.choice(LAST)} {i}",
                "role": "agent",
                "token_hash": hash_token(f"bench-agent-{i}-{seed}"),
                "is_active": True,
                "created_at": now,
                "availability": "offline",
            }
            for i in range(1, AGENTS + 1)
        ]
        for role, offset in (("supervisor", 1), ("admin", 2)):
            agent_rows.append(
                {
                    **agent_rows[0],
                    "id": AGENTS + offset,
                    "email": f"{role}@centrala.example",
                    "name": role.title(),
                    "role": role,
                    "token_hash": hash_token(f"bench-{role}-{seed}"),
                }
            )
        bulk(connection, Agent.__table__, agent_rows)
        bulk(
            connection,
            Queue.__table__,
            [
                {
                    "id": i,
                    "name": name,
                    "email_address": f"{name.lower()}@centrala.example",
                    "lead_agent_id": AGENTS + 1,
                }
                for i, name in enumerate(queue_names, start=1)
            ],
        )
        seeded.queue_ids = {name: i for i, name in enumerate(queue_names, start=1)}
        # Agent 1, the measured one, works Support and Billing; the others one or two queues each.
        seeded.agent_queues = {1: [1, 2]}
        for agent in range(2, AGENTS + 1):
            first = rng.choices(range(1, len(QUEUES) + 1), queue_weights)[0]
            second = rng.choices(range(1, len(QUEUES) + 1), queue_weights)[0]
            seeded.agent_queues[agent] = sorted({first, second} if rng.random() < 0.5 else {first})
        bulk(
            connection,
            AgentQueue.__table__,
            [
                {"agent_id": agent, "queue_id": queue}
                for agent, queues in seeded.agent_queues.items()
                for queue in queues
            ],
        )
    seeded.agent_id, seeded.supervisor_id = 1, AGENTS + 1
    members: dict[int, list[int]] = {queue: [] for queue in range(1, len(QUEUES) + 1)}
    for agent, queues in seeded.agent_queues.items():
        for queue in queues:
            members[queue].append(agent)
    busy = rng.sample(range(1, contacts + 1), min(BUSY_CONTACTS, contacts))
    contact_of_org = {row["id"]: row["organization_id"] for row in contact_rows}
    tickets_of_contact: Counter[int] = Counter()
    tickets_of_org: Counter[int] = Counter()

    # Tickets, their timelines, clocks, calls and ratings, oldest first, a chunk per transaction.
    span = timedelta(days=730)
    chunk = 20_000
    interaction_id = clock_id = call_id = survey_id = 0
    started = time.monotonic()
    for first_id in range(1, tickets + 1, chunk):
        ticket_rows, interaction_rows, clock_rows, call_rows, survey_rows = [], [], [], [], []
        for ticket_id in range(first_id, min(tickets, first_id + chunk - 1) + 1):
            created = now - span * (1 - ticket_id / tickets) - timedelta(minutes=rng.uniform(0, 5))
            age_days = (now - created) / timedelta(days=1)
            status = _status_for(rng, age_days)
            is_open = status in ("new", "open", "pending", "third_party")
            contact = rng.choice(busy) if rng.random() < 0.1 else rng.randint(1, contacts)
            tickets_of_contact[contact] += 1
            if contact_of_org[contact]:
                tickets_of_org[contact_of_org[contact]] += 1
            queue = (
                None
                if rng.random() < NO_QUEUE_SHARE
                else rng.choices(range(1, len(QUEUES) + 1), queue_weights)[0]
            )
            if status == "new":
                assignee = (
                    rng.choice(members[queue]) if queue and members[queue] and rng.random() < 0.2 else None
                )
            elif is_open:
                assignee = (
                    rng.choice(members[queue]) if queue and members[queue] and rng.random() < 0.75 else None
                )
            else:
                assignee = rng.choice(members[queue]) if queue and members[queue] else rng.randint(1, AGENTS)
            priority = rng.choices(("low", "normal", "high", "urgent"), (10, 65, 18, 7))[0]
            channel = rng.choices(("email", "phone", "portal"), (80, 12, 8))[0]
            if is_open:
                updated = created + (now - created) * rng.uniform(0.3, 1.0)
            else:
                updated = min(now, created + timedelta(hours=rng.uniform(1, 120)))
            subject = rng.choice(SUBJECTS)
            seeded.ticket_queue.append(queue)
            seeded.ticket_open.append(is_open)
            seeded.statuses[status] += 1
            ticket_rows.append(
                {
                    "id": ticket_id,
                    "subject": subject,
                    "status": status,
                    "priority": priority,
                    "channel": channel,
                    "mailbox": "support@centrala.example",
                    "contact_id": contact,
                    "assignee_id": assignee,
                    "queue_id": queue,
                    "created_at": created,
                    "updated_at": updated,
                    "resolved_at": updated if status in ("resolved", "closed") else None,
                    "closed_at": updated if status == "closed" else None,
                }
            )
            # The timeline: the customer's first message (or call), then replies, their answers, notes.
            entries = 1 if status == "new" else rng.randint(2, 6)
            answered = False
            for n in range(entries):
                interaction_id += 1
                moment = created + (updated - created) * (n / max(1, entries - 1)) if entries > 1 else created
                if n == 0:
                    kind = "phone" if channel == "phone" else "in"
                elif rng.random() < 0.15:
                    kind = "note"
                elif rng.random() < 0.07:
                    kind = "phone"
                else:
                    kind = "out" if n % 2 else "in"
                row = {
                    "id": interaction_id,
                    "ticket_id": ticket_id,
                    "contact_id": contact,
                    "agent_id": None,
                    "author_address": None,
                    "thread_reason": "",
                    "classification": "normal",
                    "cc_addresses": [],
                    "occurred_at": moment,
                    "created_at": moment,
                }
                if kind == "in":
                    text = " ".join(rng.sample(SENTENCES, rng.randint(2, 4)))
                    if rng.random() < 0.05:
                        text += f" Číslo objednávky {rng.randint(7_000_000, 7_999_999)}."
                    row.update(
                        channel="portal" if channel == "portal" and n == 0 else "email",
                        direction="inbound",
                        external_id=f"bench-{seed}-{interaction_id}@mail.example",
                        author_name="Customer",
                        author_address=email_rows[contact - 1]["address"],
                        subject=subject if n == 0 else f"Re: {subject}",
                        text=text,
                    )
                elif kind == "out":
                    answered = True
                    row.update(
                        channel="email",
                        direction="outbound",
                        agent_id=assignee or 1,
                        external_id=f"reply-{seed}-{interaction_id}@centrala.example",
                        author_name=agent_rows[(assignee or 1) - 1]["name"],
                        subject=f"Re: {subject}",
                        text=rng.choice(REPLIES),
                    )
                elif kind == "note":
                    row.update(
                        channel="note",
                        direction="internal",
                        agent_id=assignee or 1,
                        external_id=None,
                        author_name=agent_rows[(assignee or 1) - 1]["name"],
                        subject="",
                        text=rng.choice(NOTES),
                    )
                else:
                    call_id += 1
                    call_sid = f"CA{seed:04d}{call_id:028d}"
                    talk = rng.randint(30, 900) if rng.random() < 0.8 else None
                    row.update(
                        channel="phone",
                        direction="inbound",
                        external_id=call_sid,
                        author_name="Customer",
                        subject="Call",
                        text=f"Call answered, talked {talk} s." if talk else "Missed call.",
                    )
                    call_rows.append(
                        {
                            "id": call_id,
                            "call_sid": call_sid,
                            "direction": "inbound",
                            "from_number": contact_phone.get(contact),
                            "line_number": "+420212345678",
                            "queue_id": queue,
                            "agent_id": assignee if talk else None,
                            "rung_agent_ids": [],
                            "state": "completed" if talk else "no-answer",
                            "outcome": "answered" if talk else "missed",
                            "started_at": moment,
                            "answered_at": moment if talk else None,
                            "ended_at": moment + timedelta(seconds=talk or 30),
                            "talk_seconds": talk,
                            "contact_id": contact,
                            "caller_match": "single" if contact in contact_phone else "withheld",
                            "candidate_contact_ids": [],
                            "ticket_id": ticket_id,
                            "interaction_id": interaction_id,
                            "note": "",
                            "created_at": moment,
                            "updated_at": moment,
                        }
                    )
                    answered = answered or bool(talk)
                interaction_rows.append(row)
            # SLA clocks: open tickets have them running (or paused while waiting), due around now; the
            # others were met or cancelled long ago.
            targets = (60, 480) if priority == "urgent" else (240, 2400)
            metrics = (
                ("next_response" if answered else "first_response", targets[0]),
                ("resolution", targets[1]),
            )
            for metric, target in metrics:
                clock_id += 1
                row = {
                    "id": clock_id,
                    "ticket_id": ticket_id,
                    "policy_id": policy_id,
                    "metric": metric,
                    "cycle": 1 if metric == "next_response" else 0,
                    "target_minutes": target,
                    "warn_before_minutes": 30,
                    "achieved_minutes": 0.0,
                    "started_at": created,
                    "running_since": None,
                    "paused_since": None,
                    "due_at": None,
                    "warn_at": None,
                    "next_check_at": None,
                    "warned_at": None,
                    "breached_at": None,
                    "met_at": None,
                    "stopped_at": None,
                }
                if status in ("new", "open"):
                    # Nearest first: some overdue, a good share within the next two hours, the rest later.
                    due = now + timedelta(
                        minutes=rng.choice(
                            (rng.uniform(-240, 0), rng.uniform(0, 120), rng.uniform(120, 4320))
                        )
                    )
                    row.update(
                        state="running",
                        running_since=updated,
                        due_at=due,
                        warn_at=due - timedelta(minutes=30),
                        next_check_at=due
                        if due - timedelta(minutes=30) <= now
                        else due - timedelta(minutes=30),
                        warned_at=due - timedelta(minutes=30) if due - timedelta(minutes=30) <= now else None,
                        breached_at=due if due <= now else None,
                    )
                elif is_open:
                    row.update(
                        state="paused", paused_since=updated, achieved_minutes=rng.uniform(0, target / 2)
                    )
                else:
                    met = metric != "resolution" or status in ("resolved", "closed")
                    row.update(
                        state="met" if met else "cancelled",
                        met_at=updated if met else None,
                        stopped_at=updated,
                        achieved_minutes=rng.uniform(1, target),
                    )
                clock_rows.append(row)
            if status in ("resolved", "closed") and rng.random() < 0.2:
                survey_id += 1
                rating = rng.choices((1, 2, 3, 4, 5), (5, 5, 10, 30, 50))[0] if rng.random() < 0.4 else None
                survey_rows.append(
                    {
                        "id": survey_id,
                        "ticket_id": ticket_id,
                        "cycle": 1,
                        "requested_at": updated,
                        "rating": rating,
                        "comment": "Rychlé vyřízení, děkuji." if rating == 5 else None,
                        "answered_at": updated + timedelta(hours=3) if rating else None,
                        "answered_by_contact_id": contact if rating else None,
                    }
                )
        with engine.begin() as connection:
            big(connection, "ticket", ticket_rows)
            big(connection, "interaction", interaction_rows)
            big(connection, "sla_clock", clock_rows)
            if call_rows:
                bulk(connection, Call.__table__, call_rows)
            if survey_rows:
                bulk(connection, CsatSurvey.__table__, survey_rows)
        _log(
            f"{ticket_rows[-1]['id']} tickets, {interaction_id} interactions in {time.monotonic() - started:.1f} s"
        )
    seeded.counts["call"] = call_id
    seeded.counts["csat_survey"] = survey_id
    seeded.busy_contacts = [contact for contact, _ in tickets_of_contact.most_common(20)]
    seeded.big_organization = tickets_of_org.most_common(1)[0][0]
    with engine.begin() as connection:
        if postgresql:
            for table in (
                "organization",
                "organization_domain",
                "contact",
                "contact_email",
                "contact_phone",
                "agent",
                "queue",
                "ticket",
                "interaction",
                "sla_clock",
                "call",
                "csat_survey",
            ):
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
    # Settle as a running installation would have: PostgreSQL vacuumed and analysed (autovacuum does it soon
    # after such a load) and its dirty pages written; SQLite's write-ahead log folded into the database file.
    if postgresql:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM (ANALYZE)")
            try:
                connection.exec_driver_sql("CHECKPOINT")
            except DBAPIError as error:  # only superusers (and pg_checkpoint) may
                _log(f"no CHECKPOINT: {error.orig}")
    else:
        engine.dispose()
        with engine.connect() as connection:
            connection.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return seeded


# --- measuring --------------------------------------------------------------------------------------------------


def _sign_in(engine, agent_id: int, now: datetime) -> str:
    """A console session for the agent, made as the sign-in makes it; returns the cookie value."""
    from sqlalchemy.orm import Session

    from centrala.tickets.agent_sessions import start_session
    from centrala.tickets.models import Agent

    with Session(engine) as session:
        token = start_session(
            session=session, agent=session.get(Agent, agent_id), now=now, user_agent="bench.console"
        )
        session.commit()
    return token


def _pages(seeded: Seeded, *, role: str, rng: random.Random) -> dict[str, list[str]]:
    """The URLs of each measured page, for the agent (their queues) or the supervisor (everything)."""
    from centrala.tickets.models import format_ticket_number

    own = seeded.agent_queues[seeded.agent_id] if role == "agent" else None
    workable = [
        ticket_id
        for ticket_id, queue in enumerate(seeded.ticket_queue, start=1)
        if own is None or queue is None or queue in own
    ]
    open_ones = [ticket_id for ticket_id in workable if seeded.ticket_open[ticket_id - 1]]
    # Agents mostly open what they are working on, and now and then an old case.
    chosen = rng.sample(open_ones, min(100, len(open_ones))) + rng.sample(workable, 100)
    rng.shuffle(chosen)
    queue = own[0] if own else seeded.queue_ids["Support"]
    return {
        "home": ["/console"],
        "tickets": ["/console/tickets"],
        "tickets_open": ["/console/tickets?status=open"],
        "tickets_urgent": ["/console/tickets?priority=urgent"],
        "tickets_queue": [f"/console/tickets?queue={queue}"],
        "tickets_organization": [f"/console/tickets?organization={seeded.big_organization}"],
        "ticket": [f"/console/tickets/{format_ticket_number(ticket_id)}" for ticket_id in chosen],
        "contact": [f"/console/contacts/{contact}" for contact in seeded.busy_contacts],
        "search": [f"/console/search?q={word}" for word in SEARCH_WORDS],
    }


ACCEPTANCE_PAGES = (
    "home",
    "tickets",
    "tickets_open",
    "tickets_urgent",
    "tickets_queue",
    "tickets_organization",
    "ticket",
)


def _start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The web process as production runs it (``centrala web``: uvicorn), with this process's settings."""
    import httpx

    port = _free_port()
    log = (folder / "web.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "centrala", "web"],
        env={**os.environ, "CENTRALA_HTTP_HOST": "127.0.0.1", "CENTRALA_HTTP_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/console/login", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"centrala web did not answer within 60 s; see {folder / 'web.log'}")


def _measure(
    base: str, cookies: dict[str, str], pages: dict[str, dict[str, list[str]]], requests: int
) -> dict[str, dict[str, list[float]]]:
    """Each page ``requests`` times per role, roles and pages interleaved so that a burst of other load (or the
    database settling after the fill) hits them all alike."""
    import httpx

    from centrala.console.web import SESSION_COOKIE

    timings = {role: {name: [] for name in pages[role]} for role in cookies}
    clients = {
        role: httpx.Client(
            base_url=base,
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
            timeout=30,
            follow_redirects=False,
        )
        for role, cookie in cookies.items()
    }
    try:
        for role, client in clients.items():
            for urls in pages[role].values():
                for url in urls[:10] * (1 if len(urls) >= 10 else 10 // len(urls)):
                    response = client.get(url)
                    if response.status_code != 200:
                        raise SystemExit(f"{url} answered {response.status_code}: {response.text[:300]}")
        for i in range(requests):
            for role, client in clients.items():
                for name, urls in pages[role].items():
                    url = urls[i % len(urls)]
                    started = time.perf_counter()
                    response = client.get(url)
                    timings[role][name].append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"{url} answered {response.status_code}")
    finally:
        for client in clients.values():
            client.close()
    return timings


def _figures(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 2),
        "p95": round(_percentile(values, 0.95), 2),
        "p99": round(_percentile(values, 0.99), 2),
        "max": round(max(values), 2),
    }


def _statement_counts(pages: dict[str, list[str]], cookie: str) -> dict[str, int]:
    """How many SQL statements one request of each page sends (in process, through the same ASGI app)."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from centrala.app import create_app
    from centrala.console.web import SESSION_COOKIE
    from centrala.core.db import get_engine

    counted: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        counted.append(statement)

    engine = get_engine()
    result = {}
    with TestClient(create_app(), base_url="https://bench.example") as client:
        client.cookies.set(SESSION_COOKIE, cookie)
        event.listen(engine, "before_cursor_execute", count)
        try:
            for name, urls in pages.items():
                client.get(urls[0])
                counted.clear()
                client.get(urls[0])
                result[name] = len(
                    [s for s in counted if not s.lstrip().upper().startswith(("BEGIN", "ROLLBACK"))]
                )
        finally:
            event.remove(engine, "before_cursor_execute", count)
    return result


def _plans(seeded: Seeded) -> dict[str, dict[str, object]]:
    """The plan and time of each work-list and ticket-list query, exactly as the console sends it, per role."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from centrala.console.worklists import TicketFilter, filtered_tickets, work_lists
    from centrala.core.db import get_engine, is_postgresql
    from centrala.tickets.models import Agent, TicketPriority, TicketStatus

    engine = get_engine()
    postgresql = is_postgresql(engine)
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if " LIMIT " in statement:
            captured.append((statement, parameters))

    plans: dict[str, dict[str, object]] = {}
    for role, agent_id in (("agent", seeded.agent_id), ("supervisor", seeded.supervisor_id)):
        with Session(engine) as session:
            agent = session.get(Agent, agent_id)
            queue = seeded.agent_queues[agent_id][0] if role == "agent" else seeded.queue_ids["Support"]
            lists = [
                (("tickets",), TicketFilter()),
                (("tickets_open",), TicketFilter(statuses=(TicketStatus.OPEN,))),
                (("tickets_urgent",), TicketFilter(priority=TicketPriority.URGENT)),
                (("tickets_queue",), TicketFilter(queue_id=queue)),
                (("tickets_organization",), TicketFilter(organization_id=seeded.big_organization)),
            ]
            jobs = [
                (
                    ("mine", "unassigned", "waiting", "breaching"),
                    partial(work_lists, session=session, agent=agent),
                )
            ]
            jobs += [
                (names, partial(filtered_tickets, session=session, agent=agent, filters=filters))
                for names, filters in lists
            ]
            for names, job in jobs:
                captured.clear()
                event.listen(engine, "before_cursor_execute", capture)
                try:
                    job()
                finally:
                    event.remove(engine, "before_cursor_execute", capture)
                # The nearest-due walk may read a second batch: its first statement is the one shown.
                for name, (statement, parameters) in zip(names, captured, strict=False):
                    plans[f"{role}_{name}"] = _explain(session, statement, parameters, postgresql)
    return plans


def _explain(session, statement: str, parameters, postgresql: bool) -> dict[str, object]:
    """EXPLAIN (PostgreSQL) or EXPLAIN QUERY PLAN (SQLite) of a statement as sent, and its median time."""
    connection = session.connection()
    prefix = "EXPLAIN (COSTS OFF) " if postgresql else "EXPLAIN QUERY PLAN "
    rows = connection.exec_driver_sql(prefix + statement, parameters).all()
    plan = " | ".join(row[0].strip() if postgresql else row[-1] for row in rows)
    times = []
    for _ in range(15):
        started = time.perf_counter()
        connection.exec_driver_sql(statement, parameters).all()
        times.append((time.perf_counter() - started) * 1000)
    return {"ms": round(statistics.median(times), 2), "plan": plan}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=200_000)
    parser.add_argument("--contacts", type=int, default=40_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (default CENTRALA_DATABASE_URL; neither: SQLite)",
    )
    args = parser.parse_args()

    server_url = args.database_url or os.environ.get("CENTRALA_DATABASE_URL") or None
    folder = Path(tempfile.mkdtemp(prefix="centrala-console-bench-"))
    url, admin_url = _scratch_database(server_url, folder)
    os.environ.update(
        CENTRALA_DATABASE_URL=url,
        CENTRALA_VAR_DIR=str(folder),
        CENTRALA_SECRET_KEY=secrets.token_urlsafe(32),
        CENTRALA_PUBLIC_URL="https://bench.example",
        CENTRALA_LOG_LEVEL="WARNING",
    )
    server = None
    try:
        from centrala.core.db import get_engine, is_postgresql
        from centrala.schema import upgrade_database

        engine = get_engine()
        started = time.monotonic()
        upgrade_database(engine)
        migrate_s = time.monotonic() - started
        now = datetime.now(UTC)
        started = time.monotonic()
        seeded = _fill(engine, tickets=args.tickets, contacts=args.contacts, seed=args.seed, now=now)
        seed_s = time.monotonic() - started
        _log(f"seeded in {seed_s:.1f} s: {dict(seeded.counts)}")
        cookies = {
            "agent": _sign_in(engine, seeded.agent_id, now),
            "supervisor": _sign_in(engine, seeded.supervisor_id, now),
        }
        rng = random.Random(args.seed)
        pages = {role: _pages(seeded, role=role, rng=rng) for role in cookies}
        server, base = _start_server(folder)
        load_before = os.getloadavg()
        _log(f"measuring {args.requests} requests of each page as the agent and as the supervisor")
        timings = _measure(base, cookies, pages, args.requests)
        results = {
            role: {name: _figures(values) for name, values in by_page.items()}
            for role, by_page in timings.items()
        }
        load_after = os.getloadavg()
        server.terminate()
        server.wait(timeout=30)
        server = None
        statements = {role: _statement_counts(pages[role], cookie) for role, cookie in cookies.items()}
        plans = _plans(seeded)
        worst = max(results[role][name]["p95"] for role in results for name in ACCEPTANCE_PAGES)
        result = {
            "bench": "console",
            "database": "postgresql" if is_postgresql(engine) else "sqlite",
            "tickets": args.tickets,
            "seeded": dict(sorted(seeded.counts.items())),
            "ticket_statuses": dict(sorted(seeded.statuses.items())),
            "seed": args.seed,
            "migrate_s": round(migrate_s, 1),
            "seed_s": round(seed_s, 1),
            "requests_per_page": args.requests,
            "agent_queues": len(seeded.agent_queues[seeded.agent_id]),
            "load_avg_1m": [round(load_before[0], 2), round(load_after[0], 2)],
            "acceptance_p95_ms": worst,
            "acceptance_met": worst < 50,
            "pages_ms": results,
            "statements": statements,
            "plans": plans,
        }
        engine.dispose()
        print(json.dumps(result, ensure_ascii=False), flush=True)
        return 0
    finally:
        if server is not None:
            server.kill()
        if admin_url:
            from centrala.core.db import get_engine

            get_engine().dispose()
            _drop(url, admin_url)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
