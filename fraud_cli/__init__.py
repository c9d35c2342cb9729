"""``fraud``: the command line on top of the house.

This package mounts every step's commands (:mod:`fraud_cli.main`) and nothing in the platform
imports it: the steps and the settings package below it never reach back up to the CLI.
"""
