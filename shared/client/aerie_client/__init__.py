"""Aerie from a Python program: :mod:`aerie_client.flags` and :mod:`aerie_client.http`.

A customer's application installs this package alone (``pip install aerie-client``); the
services install it through ``aerie-shared`` and use the same evaluation code and HTTP
client, so what a program evaluates locally is what the flags service answers.
"""
