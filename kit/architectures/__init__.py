"""The designs under test, one module each, all of one shape:

    plan(scenario) -> list[JobRequest]   which jobs to dispatch, with which participant
    async entrypoint(ctx)                the agent code of one job (a livekit JobContext)

Job processes import these modules, so they must import without side effects.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kit.config import KitError

NAMES = ("multi_session", "participant_entrypoint", "multi_dispatch")  # the concurrent designs: run by default
BASELINES = ("active_speaker",)  # one session for everyone: run when asked for


def get(name: str) -> ModuleType:
    if name not in NAMES + BASELINES:
        raise KitError(f"unknown architecture {name!r}: choose from {', '.join(NAMES + BASELINES)}")
    return importlib.import_module(f"kit.architectures.{name}")
