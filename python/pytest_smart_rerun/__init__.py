"""pytest-smart-rerun: rerun the tests that failed, in fresh pytest processes, and tell flaky failures from
broken ones.

The package holds the ``smart-rerun`` binary (installed as a console script) and the pytest plugin in
``pytest_smart_rerun.plugin``, which hands ``pytest --smart-rerun`` runs to that binary.
"""

__version__ = "1.0.0"
