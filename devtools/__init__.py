"""Developer tools: what runs a service stack or its test harness on one machine.

Nothing here ships in a service image; the services never import it.
"""
