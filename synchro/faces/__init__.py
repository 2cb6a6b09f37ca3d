"""How people reach synchro: the ``synchro`` command (``cli``), the Python API
(``api``), the Invoke tasks' runner over an INI file of pairs (``runner``,
``config``), the ongoing loop (``loop``), the progress bar and signals.
"""
