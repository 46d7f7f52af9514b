"""The error a command reports as one line (no traceback) before exiting non-zero."""

from __future__ import annotations


class PipelineError(RuntimeError):
    """Bad input or state the user can fix: a missing file, an empty seed list, a used port."""
