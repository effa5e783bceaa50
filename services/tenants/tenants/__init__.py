"""Aerie tenants: tenant lifecycle, API clients, and the OAuth2 issuer every service trusts."""
