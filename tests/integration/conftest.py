"""Shared pytest setup: fixtures live in plugin modules beside this file."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

pytest_plugins = [
    "relayq_fixture",
    "postfix_fixture",
    "fake_smarthost",
]
