"""Integrations with web frameworks: ``asyncq.integrations.fastapi`` and ``asyncq.integrations.django``.

Each is imported on its own, so using one never imports the other framework.
"""
