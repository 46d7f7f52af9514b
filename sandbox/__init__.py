"""The sandbox web: a deterministic, offline stand-in for the web, served on loopback.

`serve_in_thread(config)` (or `SandboxWeb`) serves it; `SandboxWeb.truth()` says what each
image URL is; `query_list(config)` is its query list; `write_heldout(config, folder)` writes
the labelled images for zero-shot evaluation.
"""

from sandbox.concepts import query_list
from sandbox.heldout import write_heldout
from sandbox.server import SandboxError, SandboxWeb, serve_in_thread
from sandbox.site import SandboxSite, SandboxTruth

__all__ = [
    "SandboxError",
    "SandboxSite",
    "SandboxTruth",
    "SandboxWeb",
    "query_list",
    "serve_in_thread",
    "write_heldout",
]
