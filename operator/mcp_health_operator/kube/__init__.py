"""Kubernetes I/O: the API calls, the Lease membership, and resolving a monitor's
target from the Services, Secrets and EndpointSlices the watches keep. Imports only the core."""
