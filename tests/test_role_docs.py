"""Every role's public variables agree across its three descriptions.

For each role under roles/ that has meta/argument_specs.yml, the variables of
defaults/main.yml, the options of meta/argument_specs.yml (entry point `main`)
and the variables table of README.md must tell the same story:

1. every key of defaults/main.yml is an option of argument_specs `main`;
2. every option with a `default:` is in defaults/main.yml with an equal value
   (compared after YAML parsing, types included; a Jinja template default must
   be the same string); an option that is not in defaults/main.yml must be
   `required: true` or have no `default:`;
3. every variable of defaults/main.yml and of argument_specs (all entry points)
   is in the README's variables table, and every variable of that table exists
   in defaults/main.yml or argument_specs (or, for a shared variable the README
   lists for reference, in the argument_specs of a role this one depends on,
   meta/main.yml `dependencies`);
4. where the table has a `default` column, a cell made only of backticked
   values matches defaults/main.yml (rule below);
5. every option (suboptions included, every entry point) has a non-empty
   description.

Reading the README:

- The variables tables are the Markdown tables whose first header cell is
  `variable` (outside fenced code blocks). A row's variables are the backticked
  words of its first cell: a full name (`prometheus_app_group`), an
  abbreviation that continues the row's first full name (`_port`,
  `_vip_for`: the first name with its last word(s) replaced by the
  abbreviation, whichever expansion names a known variable), or a glob
  (`aetherlink_alert_*_for`, which must match at least one variable).
- Default column: compared only when the cell consists of backticked values
  separated by ` / ` (one per variable of the row, or a single one for all of
  them), and only when the defaults/main.yml value is a scalar without Jinja
  (lists, dicts and templated values are what the tables abbreviate, e.g.
  `<install dir>/venv`). A cell value that parses as a YAML list or dict is
  skipped too. Otherwise the cell matches when its text, literally or parsed as
  YAML, equals the defaults value written as a string (`true`, `8000`, `""`).
  Cells with prose (`see above`) are not compared.
"""

import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

ROLES_DIR = ROOT / "roles"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ABBREV_RE = re.compile(r"^_[A-Za-z0-9_]+$")
GLOB_RE = re.compile(r"^[A-Za-z0-9_*]+$")
VALUES_CELL_RE = re.compile(r"^\s*`[^`]*`(\s*/\s*`[^`]*`)*\s*$")
DEFAULTS = "defaults/main.yml"
SPECS = "meta/argument_specs.yml"
README = "README.md"


def roles_with_specs(roles_dir=ROLES_DIR):
    return sorted(p.name for p in Path(roles_dir).iterdir() if (p / "meta" / "argument_specs.yml").is_file())


# --- values -------------------------------------------------------------------


def is_template(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def same_value(a, b):
    """Equality after YAML parsing, types included (bool is not int, "1" is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def as_text(value):
    """A scalar written the way a README shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def show(value):
    return "%r" % (value,)


def cell_matches(cell_text, value):
    if cell_text == as_text(value):
        return True
    try:
        parsed = yaml.safe_load(cell_text)
    except yaml.YAMLError:
        return False
    return not isinstance(parsed, (list, dict)) and as_text(parsed) == as_text(value)


def cell_is_collection(cell_text):
    try:
        return isinstance(yaml.safe_load(cell_text), (list, dict))
    except yaml.YAMLError:
        return False


def has_description(spec):
    desc = spec.get("description") if isinstance(spec, dict) else None
    if isinstance(desc, str):
        return bool(desc.strip())
    if isinstance(desc, list):
        return any(isinstance(d, str) and d.strip() for d in desc)
    return False


# --- README -------------------------------------------------------------------


def split_row(line):
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def markdown_tables(text):
    """[(header cells, [row cells, ...]), ...] of the Markdown tables outside code fences."""
    tables, lines, i, fenced = [], text.splitlines(), 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
            i += 1
            continue
        if (
            not fenced
            and line.lstrip().startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1])
        ):
            header = [c.lower() for c in split_row(line)]
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(split_row(lines[i]))
                i += 1
            tables.append((header, rows))
            continue
        i += 1
    return tables


def row_names(cell, known):
    """(names, globs, unparsed) of a table row's first cell."""
    names, globs, unparsed, base = [], [], [], None
    for token in re.findall(r"`([^`]+)`", cell):
        token = token.strip()
        if "*" in token and GLOB_RE.match(token):
            globs.append(token)
        elif NAME_RE.match(token):
            names.append(token)
            base = base or token
        elif ABBREV_RE.match(token) and base:
            words = base.split("_")
            candidates = ["_".join(words[:-k]) + token for k in range(1, len(words))]
            names.append(next((c for c in candidates if c in known), candidates[0]))
        else:
            unparsed.append(token)
    return names, globs, unparsed


def readme_variables(text, known):
    """Rows of the variables tables: [{"names", "globs", "unparsed", "default", "cell"}]."""
    rows = []
    for header, body in markdown_tables(text):
        if not header or header[0] != "variable":
            continue
        default_col = header.index("default") if "default" in header else None
        for cells in body:
            names, globs, unparsed = row_names(cells[0], known)
            default = cells[default_col] if default_col is not None and default_col < len(cells) else None
            rows.append({"names": names, "globs": globs, "unparsed": unparsed, "default": default, "cell": cells[0]})
    return rows


# --- the checker --------------------------------------------------------------


def load_yaml(path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def dependency_options(role_dir, seen=None):
    """Option names declared by the roles this role depends on (transitively)."""
    seen = set() if seen is None else seen
    meta = load_yaml(role_dir / "meta" / "main.yml") or {}
    names = set()
    for dep in meta.get("dependencies") or []:
        dep_name = dep if isinstance(dep, str) else (dep.get("role") or dep.get("name"))
        if not dep_name or dep_name in seen:
            continue
        seen.add(dep_name)
        dep_dir = role_dir.parent / dep_name
        specs = (load_yaml(dep_dir / "meta" / "argument_specs.yml") or {}).get("argument_specs") or {}
        for entry in specs.values():
            names.update((entry or {}).get("options") or {})
        names |= dependency_options(dep_dir, seen)
    return names


def check_descriptions(role, entry_name, options, problems, path=""):
    for name, spec in (options or {}).items():
        full = path + name
        if not has_description(spec):
            problems.append(
                "%s: `%s` has no description in %s (entry point %s)" % (role, full, SPECS, entry_name)
            )
        if isinstance(spec, dict) and spec.get("options"):
            check_descriptions(role, entry_name, spec["options"], problems, full + ".")


def check_suboption_defaults(role, name, spec, value, problems):
    """Suboption defaults of a dict option against the dict in defaults/main.yml."""
    if not isinstance(spec, dict) or not spec.get("options") or not isinstance(value, dict):
        return
    for sub, sub_spec in spec["options"].items():
        full = "%s.%s" % (name, sub)
        if not isinstance(sub_spec, dict) or "default" not in sub_spec:
            continue
        if sub not in value:
            problems.append(
                "%s: `%s` has `default: %s` in %s but the dict in %s has no such key"
                % (role, full, show(sub_spec["default"]), SPECS, DEFAULTS)
            )
        elif not same_value(value[sub], sub_spec["default"]):
            problems.append(
                "%s: `%s` default differs: %s has %s, %s has %s"
                % (role, full, DEFAULTS, show(value[sub]), SPECS, show(sub_spec["default"]))
            )
        else:
            check_suboption_defaults(role, full, sub_spec, value[sub], problems)


def role_doc_problems(role_dir):
    """Every disagreement between defaults, argument_specs and README of one role, as messages."""
    role_dir = Path(role_dir)
    role = role_dir.name
    problems = []

    defaults = load_yaml(role_dir / DEFAULTS) or {}
    specs = (load_yaml(role_dir / SPECS) or {}).get("argument_specs") or {}
    if "main" not in specs:
        problems.append("%s: %s has no entry point `main`" % (role, SPECS))
    main = (specs.get("main") or {}).get("options") or {}
    other = {}
    for entry_name, entry in specs.items():
        check_descriptions(role, entry_name, (entry or {}).get("options"), problems)
        if entry_name != "main":
            for name in (entry or {}).get("options") or {}:
                other.setdefault(name, entry_name)

    # defaults/main.yml <-> argument_specs (main)
    for name in defaults:
        if name not in main:
            problems.append("%s: `%s` is in %s but is not an option of %s (entry point main)" % (role, name, DEFAULTS, SPECS))
    for name, spec in main.items():
        spec = spec if isinstance(spec, dict) else {}
        if name in defaults:
            if "default" in spec and not same_value(defaults[name], spec["default"]):
                note = " (a template default must be the same string)" if is_template(defaults[name]) else ""
                problems.append(
                    "%s: `%s` default differs: %s has %s, %s has %s%s"
                    % (role, name, DEFAULTS, show(defaults[name]), SPECS, show(spec["default"]), note)
                )
            elif not is_template(defaults[name]):
                check_suboption_defaults(role, name, spec, defaults[name], problems)
        elif "default" in spec:
            if spec.get("required"):
                problems.append(
                    "%s: `%s` is `required: true` and has `default: %s` in %s, and is not in %s: drop the `default:`"
                    % (role, name, show(spec["default"]), SPECS, DEFAULTS)
                )
            else:
                problems.append(
                    "%s: `%s` has `default: %s` in %s but is not in %s; an option without a role default must be "
                    "`required: true` or have no `default:`" % (role, name, show(spec["default"]), SPECS, DEFAULTS)
                )

    # README variables table
    readme_path = role_dir / README
    if not readme_path.is_file():
        problems.append("%s: %s is missing" % (role, README))
        return problems
    own = set(defaults) | set(main) | set(other)
    shared = dependency_options(role_dir)
    rows = readme_variables(readme_path.read_text(), own | shared)
    if not rows:
        problems.append("%s: %s has no variables table (a table whose first column is `variable`)" % (role, README))
        return problems

    documented = set()
    for row in rows:
        documented.update(row["names"])
        for glob in row["globs"]:
            matched = {n for n in own | shared if fnmatch.fnmatchcase(n, glob)}
            if not matched:
                problems.append(
                    "%s: `%s` in the %s variables table matches no variable of %s or %s"
                    % (role, glob, README, DEFAULTS, SPECS)
                )
            documented |= matched
        for token in row["unparsed"]:
            problems.append(
                "%s: `%s` in the first column of the %s variables table is not a variable name" % (role, token, README)
            )
        for name in row["names"]:
            if name not in own and name not in shared:
                problems.append(
                    "%s: `%s` is in the %s variables table but in neither %s nor %s"
                    % (role, name, README, DEFAULTS, SPECS)
                )
        problems.extend(default_cell_problems(role, row, defaults, own))

    for name in sorted(own):
        if name not in documented:
            where = [s for s, present in ((DEFAULTS, name in defaults), (SPECS, name in main or name in other)) if present]
            entry = "" if name in main or name not in other else " (entry point %s)" % other[name]
            problems.append(
                "%s: `%s` is in %s%s but missing from the %s variables table"
                % (role, name, " and ".join(where), entry, README)
            )

    return list(dict.fromkeys(problems))


def default_cell_problems(role, row, defaults, own):
    cell, names = row["default"], row["names"]
    if cell is None or not names or not VALUES_CELL_RE.match(cell):
        return []
    values = [v.strip() for v in re.findall(r"`([^`]*)`", cell)]
    if len(values) == 1:
        values = values * len(names)
    if len(values) != len(names):
        return [
            "%s: the %s row %s gives %d default values for %d variables"
            % (role, README, row["cell"], len(values), len(names))
        ]
    problems = []
    for name, text in zip(names, values):
        if name not in own:
            continue  # already reported: in neither defaults/main.yml nor argument_specs
        if name not in defaults:
            if not cell_is_collection(text):
                problems.append(
                    "%s: `%s` has default `%s` in the %s variables table but is not in %s"
                    % (role, name, text, README, DEFAULTS)
                )
            continue
        value = defaults[name]
        if isinstance(value, (list, dict)) or is_template(value) or cell_is_collection(text):
            continue
        if not cell_matches(text, value):
            problems.append(
                "%s: `%s` default differs: %s variables table has `%s`, %s has %s"
                % (role, name, README, text, DEFAULTS, show(value))
            )
    return problems


# --- the tests ----------------------------------------------------------------


@pytest.mark.parametrize("role", roles_with_specs())
def test_role_variables_agree(role):
    problems = role_doc_problems(ROLES_DIR / role)
    assert not problems, "%d disagreement(s):\n" % len(problems) + "\n".join(problems)


FAKE_DEFAULTS = """\
---
fake_port: 8000
fake_listen: "0.0.0.0:{{ fake_port }}"
fake_name: alpha
fake_stray: 1
fake_hidden: x
fake_user: fake
fake_group: fake
fake_opts:
  level: 1
"""

FAKE_SPECS = """\
---
argument_specs:
  main:
    short_description: fake
    options:
      fake_port: {type: int, default: 9000, description: Port.}
      fake_listen: {type: str, default: "0.0.0.0:8000", description: Listen address.}
      fake_name: {type: str, default: alpha, description: Name.}
      fake_hidden: {type: str, default: x, description: Hidden.}
      fake_user: {type: str, default: fake, description: User.}
      fake_group: {type: str, default: fake, description: ""}
      fake_opts:
        type: dict
        description: Options.
        options:
          level: {type: int, default: 2, description: Level.}
      fake_orphan: {type: int, default: 5, description: Only in the specs.}
      fake_secret: {type: str, no_log: true, description: Optional, no default anywhere.}
      fake_needed: {type: str, required: true, description: Required.}
  extra:
    short_description: another entry point
    options:
      fake_extra: {type: str, description: Only in the extra entry point.}
"""

FAKE_README = """\
# Role `fake`

| step | file |
|---|---|
| `not_a_variable` | ignored: not a variables table |

## Variables

| variable | default | meaning |
|---|---|---|
| `fake_port` | `8000` | port |
| `fake_listen` | `0.0.0.0:8000` | templated default: not compared |
| `fake_name` | `beta` | wrong default |
| `fake_user` / `_group` | `fake` | abbreviation, one value for both |
| `fake_opts` | `{level: 1}` | dict: not compared |
| `fake_orphan` | `5` | |
| `fake_secret`, `fake_needed` | see above | prose: not compared |
| `fake_ghost` | `1` | in no other source |
| `fake_*_nothing` | | glob matching nothing |
"""


def write_role(root, name, defaults, specs, readme, meta="---\ndependencies: []\n"):
    role = root / "roles" / name
    for path, text in (("defaults/main.yml", defaults), ("meta/argument_specs.yml", specs),
                       ("meta/main.yml", meta), ("README.md", readme)):
        (role / path).parent.mkdir(parents=True, exist_ok=True)
        (role / path).write_text(text)
    return role


def test_checker_reports_every_kind_of_disagreement(tmp_path):
    problems = role_doc_problems(write_role(tmp_path, "fake", FAKE_DEFAULTS, FAKE_SPECS, FAKE_README))
    text = "\n".join(problems)
    expected = [
        # defaults key that is no option
        "fake: `fake_stray` is in defaults/main.yml but is not an option of meta/argument_specs.yml",
        # defaults and argument_specs defaults differ, plain and templated, and in a suboption
        "fake: `fake_port` default differs: defaults/main.yml has 8000, meta/argument_specs.yml has 9000",
        "fake: `fake_listen` default differs: defaults/main.yml has '0.0.0.0:{{ fake_port }}', "
        "meta/argument_specs.yml has '0.0.0.0:8000' (a template default must be the same string)",
        "fake: `fake_opts.level` default differs: defaults/main.yml has 1, meta/argument_specs.yml has 2",
        # a default only in argument_specs
        "fake: `fake_orphan` has `default: 5` in meta/argument_specs.yml but is not in defaults/main.yml; "
        "an option without a role default must be `required: true` or have no `default:`",
        # README: missing variables (defaults + specs, and another entry point), unknown ones, bad glob
        "fake: `fake_hidden` is in defaults/main.yml and meta/argument_specs.yml but missing from the README.md variables table",
        "fake: `fake_stray` is in defaults/main.yml but missing from the README.md variables table",
        "fake: `fake_extra` is in meta/argument_specs.yml (entry point extra) but missing from the README.md variables table",
        "fake: `fake_ghost` is in the README.md variables table but in neither defaults/main.yml nor meta/argument_specs.yml",
        "fake: `fake_*_nothing` in the README.md variables table matches no variable",
        # README default column
        "fake: `fake_name` default differs: README.md variables table has `beta`, defaults/main.yml has 'alpha'",
        "fake: `fake_orphan` has default `5` in the README.md variables table but is not in defaults/main.yml",
        # description
        "fake: `fake_group` has no description in meta/argument_specs.yml (entry point main)",
    ]
    for message in expected:
        assert message in text, "not reported: %s\n--- reported:\n%s" % (message, text)
    assert len(problems) == len(expected), text


def test_checker_accepts_a_consistent_role(tmp_path):
    defaults = "---\nfake_port: 8000\nfake_on: true\nfake_empty: \"\"\nfake_url: \"http://x:{{ fake_port }}\"\n"
    specs = """\
---
argument_specs:
  main:
    options:
      fake_port: {type: int, default: 8000, description: Port.}
      fake_on: {type: bool, default: true, description: [On.]}
      fake_empty: {type: str, default: "", description: Empty.}
      fake_url: {type: str, description: URL.}
      fake_alert_a_for: {type: str, required: true, description: Shared-style duration.}
      fake_alert_b_for: {type: str, required: true, description: Shared-style duration.}
"""
    readme = """\
| variable | default | meaning |
|---|---|---|
| `fake_port` / `_on` | `8000` / `true` | |
| `fake_empty` | `""` | |
| `fake_url` | `http://x:<port>` | |
| `fake_alert_*_for` | required | glob |
| `dep_shared` | | a dependency's variable, listed for reference |
"""
    write_role(tmp_path, "dep", "---\n", "---\nargument_specs:\n  main:\n    options:\n      dep_shared: {type: str, description: x}\n",
               "| variable |\n|---|\n| `dep_shared` |\n")
    role = write_role(tmp_path, "fake", defaults, specs, readme, meta="---\ndependencies:\n  - role: dep\n")
    assert role_doc_problems(role) == []
