"""The package version, on the ground floor so that any module can name it without importing ``assay``'s
``__init__`` (which imports the public API from the floors above)."""

__version__ = "0.1.0"
