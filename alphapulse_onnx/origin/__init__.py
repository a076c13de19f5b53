"""Origin checks: each artifact against the model as the library versions that saved it ran it.

For every model file, ``recorded`` reads which scikit-learn (and XGBoost or LightGBM) wrote it;
``pins`` adds the numpy, scipy and pandas of that release's era; ``environments`` makes (once,
cached) an isolated environment with exactly those versions; ``worker`` runs inside it, loads the
file with apo's own loader and answers the probe rows (``client`` talks to it); ``check`` plans
the environments and compares the worker's answers with the artifact's. Rows and answers cross
between the two processes in ``exchange``'s format.

This ``__init__`` imports nothing on purpose: inside an old environment the worker imports
``alphapulse_onnx.origin.exchange`` through this package, and only numpy is there to import.
"""
