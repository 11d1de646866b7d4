"""Row ids as the API takes them: bounded to what the database can hold.

Primary keys are 32-bit integers on PostgreSQL; a larger id names nothing, and passed on to the database it
made PostgreSQL refuse the query (a 500). Every id a request carries, in its path, query or body, uses one of
these types, so that it is refused with a 422 that says why instead.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

MAX_ID = 2**31 - 1

PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int, Query(ge=1, le=MAX_ID)]
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]
