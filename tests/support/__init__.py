"""Helpers shared by the test suites: waiting, Docker containers, the compose stack, the API."""
