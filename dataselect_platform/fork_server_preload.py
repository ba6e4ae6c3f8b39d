"""What the fork server imports before it forks any worker: the code location, and a quick exit.

The fork server does no work of its own, so at the build's end it skips the interpreter's
teardown of every module it imported (about 1.5 s with Dagster, GX and scikit-learn loaded),
which would hold the build's stdout and stderr open that long after the build process has
exited. The workers it forks end with ``os._exit`` and never run atexit handlers, so they are
unaffected.
"""

import atexit
import os

import dataselect_platform.definitions  # noqa: F401

atexit.register(os._exit, 0)  # registered last, so it runs first
