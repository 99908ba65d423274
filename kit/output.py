"""What a command prints and answers once a run is measured: the summary tables, the report step,
and the exit code (docs/usage.md: 0 complete, 1 incomplete, 2 bad input, 3 measured but the report
failed, 128 + the signal when interrupted)."""

from __future__ import annotations

import sys

import pandas as pd

from kit import lab
from kit.results import metrics


def print_summary(tables: metrics.Tables) -> None:
    print("\nper architecture")
    print_table(tables.architectures[list(metrics.ARCH_COLUMNS)].rename(columns=metrics.ARCH_COLUMNS))
    print("\nper speaker")
    print_table(tables.speakers[list(metrics.SPEAKER_COLUMNS)].rename(columns=metrics.SPEAKER_COLUMNS))


# Exit codes of compare, run and live (docs/usage.md): the run measured everything and wrote it,
# but its report could not be written (the tables and run.json are on disk).
REPORT_FAILED = 3


def exit_code(complete: bool, reported: bool) -> int:
    """0 complete and reported; 1 incomplete (whatever the report did); 3 measured, report failed."""
    if not complete:
        return 1
    return 0 if reported else REPORT_FAILED


def write_report(run: lab.Run, console: lab.Run | None = None) -> bool:
    """Write a measured run's report from its loaded tables; on failure one line naming the step, and
    False (the run's tables and run.json are already on disk, so nothing measured is lost)."""
    from kit.results import report

    run_dir = run.run_dir
    try:
        print(f"report: {report.write(run_dir, run=run, console=console)}")
        return True
    except Exception as e:  # noqa: BLE001 - any fault of a later step must not hide the measured run
        print(f"error: writing the report failed ({type(e).__name__}: {e}); the tables and run.json are in {run_dir}",
              file=sys.stderr)  # fmt: skip
        return False


def print_table(df: pd.DataFrame) -> None:
    with pd.option_context("display.max_colwidth", 200, "display.width", 200, "display.float_format", "{:.2f}".format):
        print(df.to_string(index=False, na_rep="n/a"))  # NaN = not measured (e.g. WER without reference text)
