"""The designs under test, one module each, all of one shape:

    DESIGN                               what it is, as the report, notebooks and plots show it
    plan(scenario) -> list[JobRequest]   which jobs to dispatch, with which participant
    async entrypoint(ctx)                the agent code of one job (a livekit JobContext)

A new design is one new module (and its name in NAMES or BASELINES): nothing else lists them.

Job processes import these modules, so they must import without side effects.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from kit.config import KitError

NAMES = ("multi_session", "participant_entrypoint", "multi_dispatch")  # the concurrent designs: run by default
BASELINES = ("active_speaker",)  # one session for everyone: run when asked for


@dataclass(frozen=True)
class Design:
    """What a design is, in the report's design table and the figures' colours."""

    color: str  # its one colour in every figure (Okabe-Ito: distinguishable with colour blindness)
    jobs: str  # jobs per room: "1" or "N" (one per participant)
    agent_participants: str  # agent participants in the room: "1" or "N"
    per_participant: str  # what runs per participant
    livekit_parts: str  # the livekit-agents parts it stands on


def design(name: str) -> Design | None:
    """The DESIGN of a design module; None for a name that is not one (e.g. your own agent's label)."""
    return get(name).DESIGN if name in NAMES + BASELINES else None


def get(name: str) -> ModuleType:
    if name not in NAMES + BASELINES:
        raise KitError(f"unknown architecture {name!r}: choose from {', '.join(NAMES + BASELINES)}")
    return importlib.import_module(f"kit.architectures.{name}")
