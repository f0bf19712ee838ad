"""lenghu: pipelines, conversion and a viewer for the Lenghu observatory.

The ``lenghu`` package itself holds pure functions and small data types over
numpy and astropy; scheduling lives in :mod:`lenghu.pipelines` and GL in
:mod:`lenghu.viewer`, both imported lazily.
"""

__version__ = "0.1.0"
