"""The ``skal label`` command: parse the options, open the pool and the store,
import seed labels, and serve the app with uvicorn on 127.0.0.1."""

import argparse
import getpass
import sys
from pathlib import Path

__all__ = ["build_parser", "main", "setup"]


def _classes(text):
    names = [c.strip() for c in text.split(",") if c.strip()]
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"give at least two comma-separated classes, got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"classes must be distinct, got {text!r}")
    return names


def build_parser():
    """The ``skal label`` argument parser."""
    from ..cli import _positive
    from .worker import MODELS

    p = argparse.ArgumentParser(
        prog="skal label",
        description="Label a pool of images in the browser; an active learner picks what to "
        "label next. Every label is stored in SQLite at once.",
    )
    p.add_argument("pool", metavar="POOL",
                   help="an image folder (class sub-folders give initial labels) or a .npy "
                   "array of images")
    p.add_argument("--classes", type=_classes, required=True, help="comma-separated class names")
    p.add_argument("--strategy", default="margin",
                   help="query strategy, a name of `skal --list-strategies` (default: margin)")
    p.add_argument("--model", choices=tuple(MODELS), default="logreg",
                   help="logreg: logistic regression on 16x16 pixels, quick to retrain "
                   "(default); lenet5: skal's LeNet-5 on 28x28, for the deep strategies")
    p.add_argument("--db", default="labels.sqlite", help="SQLite file (default: labels.sqlite)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    p.add_argument("--seed-labels", default=None,
                   help="initial labels: a CSV (id,label) or a Label Studio JSON export")
    p.add_argument("--batch-size", type=_positive, default=10, help="items per batch (default: 10)")
    p.add_argument("--retrain-every", type=_positive, default=10,
                   help="retrain after this many new labels (default: 10)")
    p.add_argument("--cv", type=int, default=5,
                   help="folds of the accuracy estimate, 0 for none (default: 5)")
    p.add_argument("--budget", type=_positive, default=None,
                   help="show a label-budget stopping criterion")
    p.add_argument("--user", default=None, help="annotator name stored with each label "
                   "(default: the login name; the page can set its own)")
    p.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    return p


def setup(args):
    """``(store, pool, worker)`` for parsed arguments; imports the seed labels.

    Raises ValueError with a message for the user on bad input, before the
    store is changed.
    """
    from .exchange import read_seed_labels
    from .pool import open_pool
    from .store import Store
    from .worker import Worker

    pool = open_pool(args.pool)
    seeds, unmatched = ({}, [])
    if args.seed_labels is not None:
        if not Path(args.seed_labels).is_file():
            raise ValueError(f"--seed-labels {args.seed_labels!r} is not a file.")
        seeds, unmatched = read_seed_labels(args.seed_labels, pool, args.classes)
    worker_kwargs = dict(strategy=args.strategy, model=args.model, batch_size=args.batch_size,
                         retrain_every=args.retrain_every, cv=args.cv, budget=args.budget,
                         random_state=args.random_state)
    store = Store(args.db)
    stray = sorted(set(store.labels().values()) - set(args.classes))
    if stray:
        raise ValueError(
            f"{args.db} holds labels of classes {stray} that are not in --classes; "
            "add them to --classes or use another --db."
        )
    worker = Worker(store, pool, args.classes, **worker_kwargs)  # validates before writing
    store.set_meta("pool", str(Path(args.pool).resolve()))
    store.set_meta("classes", args.classes)
    who = args.user or _login()
    n_folder = store.add_many(pool.folder_labels(args.classes), who=who, source="folder")
    n_seed = store.add_many(seeds, who=who, source="seed")
    if n_folder or n_seed:
        print(f"skal label: {n_folder} labels from class folders, {n_seed} from "
              f"{args.seed_labels}", file=sys.stderr)
    if unmatched:
        print(f"skal label: {len(unmatched)} seed labels name no pool item "
              f"(first: {unmatched[0]!r}); ignored", file=sys.stderr)
    return store, pool, worker


def _login():
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "anonymous"


def main(argv=None):
    """Run ``skal label``; returns the exit status.

    Examples
    --------
    >>> main(["photos/", "--classes", "cat,dog"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        print(f"skal label: error: {exc}; install the extra: pip install 'skal[label]'",
              file=sys.stderr)
        return 1
    try:
        store, pool, worker = setup(args)
    except ValueError as exc:
        parser.error(str(exc))
    app = create_app(store, pool, args.classes, worker, title=str(args.pool),
                     default_who=args.user or _login())
    print(f"skal label: http://{args.host}:{args.port}/ ({len(pool)} items, db {args.db})",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
