"""Cirque's service interfaces over pytest-cirque homes: its REST routes (`cirque serve`,
the ``cirque_service`` fixture) and its gRPC ``CirqueService``, so programs written for
Cirque's service run unchanged."""
