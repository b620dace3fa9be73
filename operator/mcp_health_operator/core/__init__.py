"""The pure core: the health model, the judge, and every decision made from a probe.

Nothing here does I/O or imports kopf, a Kubernetes client, HTTP or mcp
(``make lint`` holds it to that): each module is a function of its inputs,
tested without a server.
"""
