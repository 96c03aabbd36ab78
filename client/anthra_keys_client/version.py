"""This client's version: in its User-Agent, and its distribution's."""

VERSION = "0.1.0"
