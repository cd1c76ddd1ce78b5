"""The Hyperdash server: the HTTP API and the web dashboard (the ``server`` extra).

It imports nothing of the SDK but :mod:`hyperdash.events`, the schema the two share.
"""
