"""hyperhive: the small kernel shared by hive-broker, hive-c0re and the harness.

The services live in their own top-level folders (``broker/``, ``reconciler/``,
``harness/``) and are mapped into this namespace by setuptools' package-dir.
They may import this kernel but never one another.
"""

__version__ = "0.1.0"
