"""dwlib: measure whether a transformer should be deeper or wider at a fixed budget.

Modules, in the order data flows: config → model → data → train → store → sweep → fit → charts →
widgets. Notebooks in notebooks/ call them; `python -m dwlib` is the command line.
"""
__version__ = "0.1.0"
