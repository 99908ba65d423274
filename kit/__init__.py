"""A research kit that measures how best to transcribe every participant of one LiveKit room.

Data flow: scenario -> room -> architecture -> events -> metrics -> tables, plots, report.
"""

import os

# The kit never downloads: livekit-agents must not preload its local inference models.
os.environ.setdefault("LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE", "0")

__version__ = "0.1.0"
