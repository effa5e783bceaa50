"""Aerie console: the web pages where people run Aerie."""
