"""Labels in and out of ``skal label``: CSV and Label Studio's JSON task format.

Export writes the active labels as a CSV (``id,label,who,at,source``) or as
Label Studio tasks with one ``choices`` annotation each; import reads a seed CSV
(``id,label``) or a Label Studio export (the full JSON, or JSON-MIN) and maps
its image paths onto the pool's items.
"""

import csv
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse

__all__ = ["from_labelstudio", "read_seed_labels", "to_csv", "to_labelstudio"]

# Label Studio prefixes uploaded files with 8 hex digits and a dash.
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def _iso(t):
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds")


def to_csv(annotations, pool):
    """CSV text of the label annotations (``Store.annotations(kind="label")``).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> pool = SimpleNamespace(source=lambda i: i)
    >>> print(to_csv([{"item_id": "a.png", "label": "cat", "who": "ann", "at": 0.0,
    ...                "source": "user"}], pool).strip())
    id,label,who,at,source
    a.png,cat,ann,1970-01-01T00:00:00+00:00,user
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "label", "who", "at", "source"])
    for a in annotations:
        writer.writerow([pool.source(a["item_id"]), a["label"], a["who"], _iso(a["at"]),
                         a["source"]])
    return buf.getvalue()


def to_labelstudio(annotations, pool, *, from_name="choice", to_name="image"):
    """Label Studio tasks, one per label, with the image path in ``data.image``
    and the class as a ``choices`` result (import them into a project with an
    ``<Image name="image">`` and a ``<Choices name="choice">`` tag)."""
    tasks = []
    for n, a in enumerate(annotations, start=1):
        tasks.append({
            "id": n,
            "data": {"image": pool.source(a["item_id"])},
            "annotations": [{
                "result": [{
                    "from_name": from_name, "to_name": to_name, "type": "choices",
                    "value": {"choices": [a["label"]]},
                }],
                "completed_by": a["who"],
                "created_at": _iso(a["at"]),
                "was_cancelled": False,
            }],
        })
    return tasks


def _match(path, pool, lookup):
    """The pool item a Label Studio image reference points to, or None."""
    if path in pool:
        return path
    parsed = urlparse(path)
    if parsed.fragment and parsed.fragment in pool:  # an array pool's "pool.npy#12"
        return parsed.fragment
    candidates = [unquote(parsed.path)]
    query = parse_qs(parsed.query)
    if "d" in query:  # local-files storage: /data/local-files/?d=dir/cat1.jpg
        candidates.insert(0, unquote(query["d"][0]))
    for cand in candidates:
        parts = PurePosixPath(cand).parts
        for k in range(len(parts)):  # longest suffix first
            suffix = "/".join(parts[k:])
            if suffix in pool:
                return suffix
        name = parts[-1] if parts else ""
        for key in (name, _UPLOAD_PREFIX.sub("", name)):
            if key in lookup and lookup[key] is not None:
                return lookup[key]
    return None


def from_labelstudio(tasks, pool, classes):
    """``({id: label}, unmatched)`` from Label Studio tasks.

    The newest annotation of a task that was not cancelled gives its class;
    JSON-MIN rows (``{"image": ..., "choice": ...}``) work too. ``unmatched``
    lists image references that name no pool item.
    """
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise TypeError("A Label Studio export is a JSON list of tasks.")
    # basename -> id, None when two items share a basename (ambiguous).
    lookup = {}
    for item in pool.ids:
        name = PurePosixPath(item).name
        lookup[name] = None if name in lookup else item
    labels, unmatched, known = {}, [], set(classes)
    for task in tasks:
        data = task.get("data", task)
        image = data.get("image") or next(
            (v for v in data.values() if isinstance(v, str)), None)
        label = None
        for ann in sorted(task.get("annotations", []), key=lambda a: str(a.get("created_at", ""))):
            if ann.get("was_cancelled"):
                continue
            for res in ann.get("result", []):
                choices = res.get("value", {}).get("choices")
                if choices:
                    label = choices[0]
        if label is None:
            for key in ("choice", "label", "class"):
                if isinstance(task.get(key), str):
                    label = task[key]
        if image is None or label is None:
            continue
        if label not in known:
            raise ValueError(
                f"Label Studio task for {image!r} has class {label!r}, which is not one of "
                f"--classes ({', '.join(classes)})."
            )
        item = _match(str(image), pool, lookup)
        if item is None:
            unmatched.append(str(image))
        else:
            labels[item] = label
    return labels, unmatched


def read_seed_labels(path, pool, classes):
    """Seed labels from a CSV (``id,label``, header optional) or a Label Studio
    JSON export; returns ``({id: label}, unmatched)``.

    Raises a ValueError naming the first bad row before anything is stored.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        return from_labelstudio(json.loads(text), pool, classes)
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] in (["id", "label"], ["image", "label"],
                                                              ["path", "label"], ["id", "class"]):
        rows = rows[1:]
    labels, unmatched, known = {}, [], set(classes)
    lookup = {}
    for item in pool.ids:
        lookup.setdefault(PurePosixPath(item).name, item)
    for n, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise ValueError(f"{path}: row {n} {row!r} needs two columns, id and label.")
        item, label = row[0].strip(), row[1].strip()
        if label not in known:
            raise ValueError(
                f"{path}: row {n} has class {label!r}, not one of --classes ({', '.join(classes)})."
            )
        match = _match(item, pool, lookup)
        if match is None:
            unmatched.append(item)
        else:
            labels[match] = label
    return labels, unmatched
