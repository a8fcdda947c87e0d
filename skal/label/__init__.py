"""``skal label``: a local labeling page over the active-learning loop.

A small ASGI app (Starlette + uvicorn, extra ``skal[label]``) shows the current
query batch of a pool of images, takes labels from buttons or number keys and
writes each one to SQLite at once; a background worker retrains a
:class:`skal.ActiveLearner` and queries the next batch. Modules:

- :mod:`~skal.label.pool`: the images (a folder or a ``.npy`` array).
- :mod:`~skal.label.store`: the SQLite store, the one source of truth.
- :mod:`~skal.label.worker`: the background trainer.
- :mod:`~skal.label.exchange`: CSV and Label Studio export / import.
- :mod:`~skal.label.render`, :mod:`~skal.label.app`: the page and the JSON API.
- :mod:`~skal.label.cli`: the ``skal label`` command.

``import skal`` does not import this package (nor Starlette).
"""

__all__ = ["main"]


def main(argv=None):
    """Run ``skal label``; see :func:`skal.label.cli.main`."""
    from .cli import main as _main

    return _main(argv)
