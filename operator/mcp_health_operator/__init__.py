"""mcp-health-operator: judges MCP servers by their ``health://status`` resource."""

__version__ = "0.1.0"
