"""The process: kopf handlers, the app that wires them, and the ``mcp-health`` CLI."""
