"""The kit's one progress bar: room seconds replayed, per architecture (terminal and notebooks).

tqdm.auto draws a widget in Jupyter (ipywidgets) and a text bar in a terminal.
"""

from __future__ import annotations

from collections.abc import Callable


def room_bar(arch: str, duration_s: float) -> Callable[[float], None]:
    """A bar for one architecture's replay; call the result with the seconds elapsed since t0,
    and with float('inf') when the architecture is done (fills and closes the bar)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=round(duration_s), desc=f"{arch:>22}", unit="s", bar_format="{desc}: {bar} {n:.0f}/{total:.0f} s room")

    def update(elapsed: float) -> None:
        if elapsed == float("inf"):
            bar.n = bar.total
            bar.close()
        else:
            bar.n = min(bar.total, max(0, round(elapsed)))
            bar.refresh()

    return update
