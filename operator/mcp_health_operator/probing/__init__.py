"""Reading ``health://status`` from an MCP server: sessions, transports, and the one
place a failure becomes an outcome. Imports only the core."""
