"""Notifications: ``render`` turns events into text (pure), ``deliver`` sends it."""
