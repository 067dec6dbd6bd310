"""Toolkit for the meta-defender-iot security micro agent."""

__version__ = "0.1.0"
