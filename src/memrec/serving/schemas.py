"""The HTTP API's request and response bodies (pydantic; they make ``/openapi.json``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: ids are strings on the wire; numbers are accepted and read as their decimal text
RawId = str | int


class EventIn(BaseModel):
    """One interaction: ``{"user": "196", "item": "242", "timestamp": 881250949, "type": "click"}``."""

    model_config = ConfigDict(extra="forbid")
    user: RawId
    item: RawId
    timestamp: int | None = None
    type: str = Field("click", min_length=1, max_length=32)


class EventsIn(BaseModel):
    """A batch of events (applied all or nothing), or one event's fields at the top level."""

    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data):
        if isinstance(data, dict) and "events" not in data:
            return {"events": [data]}
        return data


class Applied(BaseModel):
    applied: int


class Entry(BaseModel):
    """A memory entry a score attended to: kind (user / item / relation / slot / click), its
    raw id or label, and the attention weight."""

    kind: str
    id: str
    weight: float


class Item(BaseModel):
    item: str
    score: float
    explanation: list[Entry] | None = None


class Recommendations(BaseModel):
    user: str | None
    model: str
    items: list[Item]
    events_seen: int
    cold_start: bool


class HistoryIn(BaseModel):
    """A live session or an anonymous user: its items, oldest first; nothing is stored."""

    model_config = ConfigDict(extra="forbid")
    history: list[RawId] = Field(max_length=10_000)
    k: int = 10
    explain: bool = False
    exclude_seen: bool = True


class MemoryRow(BaseModel):
    """One entry of a memory: its label (a raw item / user id, a relation's name, ``slot 3``)
    and, for a memory of vectors, the vector."""

    label: str
    vector: list[float] | None = None


class Memory(BaseModel):
    user: str
    model: str
    known: bool
    events_seen: int
    state: str | None = Field(description="the state's type; None: the model keeps none")
    kind: str = Field(description="what the rows are: item, user, relation, slot, hidden, history")
    rows: list[MemoryRow]
    state_bytes: int


class Health(BaseModel):
    status: str
    model: str
    checkpoint: str
    device: str              # where the model runs: cpu, cuda:0, mps, ...


__all__ = ["EventIn", "EventsIn", "Applied", "Entry", "Item", "Recommendations", "HistoryIn",
           "MemoryRow", "Memory", "Health"]
