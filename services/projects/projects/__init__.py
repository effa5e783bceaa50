"""Aerie projects service."""
