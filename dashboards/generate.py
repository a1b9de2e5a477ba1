"""Write the AetherLink dashboards as the JSON the grafana role provisions.

    .venv/bin/python -m dashboards            # (re)write roles/grafana/files/dashboards/<uid>.json
    .venv/bin/python -m dashboards --check    # exit 1 when the committed JSON differs from the code
    .venv/bin/python -m dashboards --out DIR  # write somewhere else

One file per dashboard, named after its uid: keys sorted, 2-space indent,
trailing newline, so that the output only changes when the dashboards do.
The output directory belongs to the generator: a *.json file there that no
dashboard produces is removed (--check reports it).
"""

import argparse
import json
import sys
from pathlib import Path

from .aetherlink_dashboards import DASHBOARDS

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "roles" / "grafana" / "files" / "dashboards"
REGENERATE = ".venv/bin/python -m dashboards"


def render(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def build_all():
    """{file name: JSON text} of every dashboard."""
    files = {}
    for module in DASHBOARDS:
        data = module.build()
        assert data["uid"] == module.UID, (module.__name__, data["uid"])
        name = "%s.json" % module.UID
        assert name not in files, "two dashboards with the uid %s" % module.UID
        files[name] = render(data)
    return files


def write(out_dir):
    """Write every dashboard into out_dir; returns (written, removed) file names."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = build_all()
    written = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(name)
    removed = []
    for path in sorted(out_dir.glob("*.json")):
        if path.name not in files:
            path.unlink()
            removed.append(path.name)
    return written, removed


def differences(out_dir):
    """File names in out_dir that differ from what the code generates (missing, changed or extra)."""
    out_dir = Path(out_dir)
    files = build_all()
    found = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists():
            found.append("%s (missing)" % name)
        elif path.read_text() != text:
            found.append("%s (differs)" % name)
    found += ["%s (not generated)" % p.name for p in sorted(out_dir.glob("*.json")) if p.name not in files]
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT_DIR), help="output directory (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when something differs")
    args = parser.parse_args(argv)
    if args.check:
        found = differences(args.out)
        for line in found:
            print("out of date: %s" % line, file=sys.stderr)
        if found:
            print("regenerate with: %s" % REGENERATE, file=sys.stderr)
            return 1
        print("%d dashboards up to date in %s" % (len(DASHBOARDS), args.out))
        return 0
    written, removed = write(args.out)
    for name in written:
        print("wrote %s" % (Path(args.out) / name))
    for name in removed:
        print("removed %s (no dashboard generates it)" % (Path(args.out) / name))
    if not written and not removed:
        print("%d dashboards up to date in %s" % (len(DASHBOARDS), args.out))
    return 0
