"""The ASGI app of ``skal label``: the page, the images and the JSON API.

Routes (all state is read from and written to the :class:`~skal.label.store.Store`):

- ``GET /``: the page; ``GET /image/{id}``: an item as PNG; ``GET /curve.svg``.
- ``GET /api/batch``: the pending query batch.
- ``POST /api/labels`` ``{"id": ..., "label": ..., "who": ...}``: store one label
  (200, ``stored`` False when that label was already there; 404 unknown id;
  409 the item has another label; 422 unknown class).
- ``POST /api/skip`` ``{"id": ..., "reason": ...}``; ``POST /api/undo`` ``{"id"?: ...}``.
- ``GET /api/status``: progress, accuracy estimate, stopping criteria, curve.
- ``GET /api/export?format=csv|labelstudio``.

The reading handlers are plain functions, which Starlette runs in its thread pool;
the posting ones are async and hand their SQLite write to that pool, so a slow disk
never blocks the event loop. Training happens in the worker thread.
"""

import contextlib
import json
from importlib import resources

from .exchange import to_csv, to_labelstudio
from .pool import UnreadableImage
from .render import curve_svg, image_url, page_html
from .store import Conflict

__all__ = ["create_app"]


def _error(status, message):
    from starlette.responses import JSONResponse

    return JSONResponse({"detail": message}, status_code=status)


async def _json_body(request):
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return None, _error(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return None, _error(400, "The request body must be a JSON object.")
    return body, None


def create_app(store, pool, classes, worker=None, *, title="pool", default_who="anonymous"):
    """The Starlette app over a store, a pool and (optionally) a running worker.

    Parameters
    ----------
    store : Store
    pool : FolderPool or ArrayPool
    classes : list of str
    worker : Worker or None
        Started with the app (lifespan) and stopped with it; None serves the
        store as it is (tests drive a worker by hand).
    title : str
    default_who : str
        Annotator name when a request gives none.

    Examples
    --------
    >>> app = create_app(store, pool, ["cat", "dog"])  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8765)  # doctest: +SKIP
    """
    # Imported here so that the module (and its docs) load without the extra.
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    classes = list(classes)
    known = set(classes)

    def batch_payload():
        items = store.batch()
        info = store.batch_info()
        done = not items and worker is not None and worker.phase == "done"
        return {"items": [{"id": i, "url": image_url(i)} for i in items], "classes": classes,
                "generation": info["generation"], "model_round": info["model_round"],
                "done": done}

    def status_payload():
        counts = store.counts()
        rounds = store.rounds()
        last = rounds[-1] if rounds else None
        labels = store.labels()
        per_class = {c: 0 for c in classes}
        for label in labels.values():
            per_class[label] = per_class.get(label, 0) + 1
        if worker is not None and worker.criteria is not None and worker.learner is not None:
            stopping = {k: c.state() for k, c in worker.criteria.items()}
        else:
            stopping = (last or {}).get("stopping") or {}
        return {
            "n_pool": len(pool),
            "n_labeled": counts["label"],
            "n_skipped": counts["skip"],
            "n_unreadable": counts["unreadable"],
            "n_unlabeled": len(pool) - sum(counts.values()),
            "per_class": per_class,
            "cv_accuracy": last["cv_accuracy"] if last else None,
            "curve": [{"round": r["round"], "n_labeled": r["n_labeled"],
                       "cv_accuracy": r["cv_accuracy"]} for r in rounds],
            "stopping": stopping,
            "batch": {k: v for k, v in batch_payload().items() if k != "items"},
            "worker": worker.status() if worker is not None else {
                "phase": "not running", "error": None, "model": None, "strategy": None,
                "last_fit_seconds": None, "model_ready": False},
            "recent": store.recent(20),
            "unreadable": store.annotations(kind="unreadable"),
        }

    def index(request):
        return HTMLResponse(page_html(title=title, classes=classes, batch=batch_payload(),
                                      status=status_payload()))

    def static(request):
        name = request.path_params["name"]
        if name not in ("label.js", "label.css"):
            return _error(404, f"No static file {name!r}.")
        text = resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(text, media_type=media, headers={"Cache-Control": "no-cache"})

    def image(request):
        item_id = request.path_params["item_id"]
        if item_id not in pool:
            return _error(404, f"No item {item_id!r} in the pool.")
        try:
            data = pool.png(item_id)
        except UnreadableImage as exc:
            return _error(415, f"Unreadable image: {exc}")
        return Response(data, media_type="image/png")

    def curve(request):
        return Response(curve_svg(store.rounds()), media_type="image/svg+xml",
                        headers={"Cache-Control": "no-cache"})

    def api_batch(request):
        return JSONResponse(batch_payload())

    def api_status(request):
        return JSONResponse(status_payload())

    def _check_item(body):
        item_id = body.get("id")
        if not isinstance(item_id, str) or not item_id:
            return None, _error(422, 'The body needs "id", the item id as a string.')
        if item_id not in pool:
            return None, _error(404, f"No item {item_id!r} in the pool.")
        return item_id, None

    def _who(body):
        who = body.get("who")
        return who.strip() if isinstance(who, str) and who.strip() else default_who

    async def api_labels(request):
        body, err = await _json_body(request)
        if err:
            return err
        item_id, err = _check_item(body)
        if err:
            return err
        label = body.get("label")
        if not isinstance(label, str) or label not in known:
            return _error(422, f"Unknown class {label!r}; the classes are: {', '.join(classes)}.")
        return await _run(lambda: store.add_label(item_id, label, who=_who(body)))

    async def api_skip(request):
        body, err = await _json_body(request)
        if err:
            return err
        item_id, err = _check_item(body)
        if err:
            return err

        def write():
            if body.get("reason") == "unreadable":
                # The browser could not show it: check, and record it as unreadable if so.
                try:
                    pool.png(item_id)
                except UnreadableImage as exc:
                    return store.add_unreadable(item_id, str(exc))
            return store.add_skip(item_id, who=_who(body), reason=body.get("reason"))

        return await _run(write)

    async def api_undo(request):
        body, err = await _json_body(request)
        if err:
            return err
        item_id = body.get("id")
        undone = await _threaded(lambda: store.undo(item_id=item_id))
        if undone is None:
            return _error(404, "Nothing to undo.")
        if worker is not None:
            worker.notify()
        return JSONResponse({"undone": undone})

    async def _run(write):
        try:
            result = await _threaded(write)
        except Conflict as exc:
            return _error(409, str(exc))
        if worker is not None:
            worker.notify()
        return JSONResponse(result)

    def api_export(request):
        fmt = request.query_params.get("format", "csv")
        annotations = store.annotations(kind="label")
        if fmt == "csv":
            return Response(to_csv(annotations, pool), media_type="text/csv", headers={
                "Content-Disposition": 'attachment; filename="labels.csv"'})
        if fmt == "labelstudio":
            return JSONResponse(to_labelstudio(annotations, pool), headers={
                "Content-Disposition": 'attachment; filename="labels-labelstudio.json"'})
        return _error(422, f"Unknown export format {fmt!r}; use csv or labelstudio.")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/image/{item_id:path}", image),
        Route("/curve.svg", curve),
        Route("/api/batch", api_batch),
        Route("/api/status", api_status),
        Route("/api/labels", api_labels, methods=["POST"]),
        Route("/api/skip", api_skip, methods=["POST"]),
        Route("/api/undo", api_undo, methods=["POST"]),
        Route("/api/export", api_export),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store, app.state.pool, app.state.worker = store, pool, worker
    return app


async def _threaded(fn):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn)
