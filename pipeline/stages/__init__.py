"""The stage runners: each composes middle-floor steps into one resumable stage.

A runner reads its input from the run folder (`core.layout`), writes its output
atomically, saves `<stage>_stats.json` and leaves `<stage>.done`; a rerun of a finished
stage does nothing but return the saved stats.
"""
