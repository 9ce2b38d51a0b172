"""Migration scripts, one per revision (``NNNN_what.py``, revision id ``NNNN``)."""
