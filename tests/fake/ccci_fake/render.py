"""docker's output: Go-template --format rendering, tables, ids.
"""

import json
import re
import time

from .errors import Fail


# ------------------------------------------------------ output helpers --


def labels_str(labels):
    return ",".join("%s=%s" % (k, v) for k, v in sorted(labels.items()))


def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "Z"


def iso_ns(ts):
    """RFC 3339 with nanoseconds, as the engine writes its timestamps."""
    return "%s.%09dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)),
                         int((ts % 1) * 1e9))


def render(template, obj):
    """The small subset of Go templates the harness uses: `{{json .}}`,
    `{{.A.B}}`, `{{json .A}}`, `{{index .A "key"}}`."""
    def lookup(path):
        if path == ".":
            return obj
        cur = obj
        for part in path.lstrip(".").split("."):
            if not isinstance(cur, dict) or part not in cur:
                raise Fail('template: executing "" at <%s>: map has no '
                           'entry for key "%s"' % (path, part))
            cur = cur[part]
        return cur

    def text(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if v is None:
            return "<no value>"
        if isinstance(v, (dict, list)):
            return "map[...]" if isinstance(v, dict) else "[...]"
        return str(v)

    def action(m):
        inner = m.group(1).strip()
        mo = re.fullmatch(r"json\s+(\.[\w.]*)", inner)
        if mo:
            return json.dumps(lookup(mo.group(1)), separators=(",", ":"))
        mo = re.fullmatch(r'index\s+(\.[\w.]*)\s+"([^"]*)"', inner)
        if mo:
            base = lookup(mo.group(1))
            return text(base.get(mo.group(2)) if isinstance(base, dict)
                        else None)
        mo = re.fullmatch(r"(\.[\w.]*)", inner)
        if mo:
            return text(lookup(mo.group(1)))
        raise Fail("unsupported format action {{%s}} (docker stand-in)"
                   % inner)

    template = template.replace("\\t", "\t").replace("\\n", "\n")
    return re.sub(r"\{\{(.*?)\}\}", action, template)


def check_template(template):
    """Refuses what render() cannot do even when there is nothing to print,
    as docker parses the template before it lists anything."""
    for inner in re.findall(r"\{\{(.*?)\}\}", template):
        inner = inner.strip()
        if not (re.fullmatch(r"json\s+(\.[\w.]*)", inner)
                or re.fullmatch(r'index\s+(\.[\w.]*)\s+"([^"]*)"', inner)
                or re.fullmatch(r"(\.[\w.]*)", inner)):
            raise Fail("unsupported format action {{%s}} (docker stand-in)"
                       % inner)


def emit(objs, fmt, quiet_field=None, quiet=False):
    if not quiet:
        check_template(fmt)
    for o in objs:
        if quiet:
            print(o[quiet_field])
        else:
            print(render(fmt, o))
