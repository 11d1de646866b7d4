"""The whole schema: every table's module imported, and Alembic migrations applied to the configured database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from centrala.core.db import Base, get_engine
import centrala.ingest.models  # noqa: F401  (registers the tables)
import centrala.portal.models  # noqa: F401
import centrala.tickets.models  # noqa: F401
import centrala.tickets.phone_models  # noqa: F401

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

metadata = Base.metadata

# Full-text search lives beside the models, written by hand for each database (migration 0012): SQLite's FTS5
# table of interactions (and the tables FTS5 keeps for it), PostgreSQL's expression index.
SEARCH_OBJECTS = frozenset(
    {
        "interaction_fts",
        "interaction_fts_data",
        "interaction_fts_idx",
        "interaction_fts_docsize",
        "interaction_fts_config",
        "ix_interaction_fulltext",
    }
)


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's filter: the search objects are not described by the models, so comparisons leave them out."""
    return name not in SEARCH_OBJECTS


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic configuration for our migrations, bound to ``engine`` (default: the configured database)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine or get_engine()
    return config


def upgrade_database(engine: Engine | None = None, revision: str = "head") -> None:
    """Apply every migration up to ``revision``."""
    command.upgrade(alembic_config(engine), revision)
