"""meshagent: the host agent runtime. Plain asyncio; never imports Django."""

__version__ = "0.1.0"
