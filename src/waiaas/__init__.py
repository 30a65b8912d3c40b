"""waiaas: an embedded wallet engine for AI agents."""

from waiaas.errors import *  # noqa: F403  (re-exported below)
from waiaas.types import *  # noqa: F403

__version__ = "0.1.0.dev0"
