"""parel_monitoring: the shared layer of the parel-monitoring SAM bundle.

Modules are imported on demand so that a function pays only for what it uses:
``observability`` (logger + Sentry + handler decorator), ``correlation``,
``logs``, ``errors`` (Sentry helpers), ``settings``, ``http`` and ``health``.
"""

import time

__version__ = "0.1.0"

# When this execution environment loaded the layer: the origin of "uptime".
ENVIRONMENT_STARTED = time.monotonic()
