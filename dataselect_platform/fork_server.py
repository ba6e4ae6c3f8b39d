"""The fork server the build's worker processes come from: it imports the code location once.

Started at the very beginning of ``dataselect build``, its import of the code location (several
seconds) runs on another core while the build process does its own imports and checks its inputs.
"""

import multiprocessing
import multiprocessing.forkserver

CODE_LOCATION_MODULE = "dataselect_platform.definitions"


def context():
    """The forkserver context whose workers have the code location imported (no state of this
    process, such as its threads or a CUDA context, is carried over)."""
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["dataselect_platform.fork_server_preload"])  # imports CODE_LOCATION_MODULE
    return forkserver


def start() -> None:
    """Start the fork server now (it imports the code location in the background)."""
    context()
    multiprocessing.forkserver.ensure_running()
