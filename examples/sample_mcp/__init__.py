"""Sample MCP servers from the operations guide: ``codebase-mcp`` and ``workflow-mcp``.

Both run on the official ``mcp`` SDK with a real PostgreSQL connection pool
and serve the guide's ``health://status`` resource (and ``GET /health/status``
with the same JSON). Run one with::

    python -m sample_mcp --profile codebase-mcp --dsn postgresql://... --port 8000
"""
