"""l1forge: machine learning for the LHC Level-1 trigger, from generated events to bit-accurate firmware."""

from importlib.metadata import version

__version__ = version("l1forge")
