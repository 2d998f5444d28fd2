"""The ASGI bridge: protocol events in, ASGI messages out, and back."""
