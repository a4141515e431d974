"""What the end-to-end tests compare: a folder's files by relative path, bytes as written, but
manifest.json without its timings (the one part of an output that may differ between runs)."""

import json
import os


def without_timings(data):
    doc = json.loads(data)
    doc.pop("timings", None)
    return json.dumps(doc, sort_keys=True).encode()


def files(root):
    """Every file under root: relative path → bytes (manifests without timings)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                data = f.read()
            if name == "manifest.json":
                data = without_timings(data)
            found[os.path.relpath(path, root)] = data
    return found
