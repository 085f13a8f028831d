#!/usr/bin/env python3
"""Tests of scripts/modgraph.py on small src/ trees in a temporary directory.
Run by scripts/lint.sh: python3 scripts/test_modgraph.py
"""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import modgraph  # noqa: E402  (the script under test, found next to this file)

SCRIPT = os.path.join(HERE, "modgraph.py")


class Tree:
    """A src/ directory of the given files ({relative path: text})."""

    def __init__(self, files):
        self.tmp = tempfile.TemporaryDirectory(prefix="ccci-modgraph-")
        self.src = os.path.join(self.tmp.name, "src")
        for rel, text in files.items():
            path = os.path.join(self.src, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

    def run(self, *args):
        return subprocess.run([sys.executable, SCRIPT, "--src", self.src, *args],
                              capture_output=True, text=True, timeout=60)

    def close(self):
        self.tmp.cleanup()


class ModGraph(unittest.TestCase):
    def tree(self, files):
        t = Tree(files)
        self.addCleanup(t.close)
        return t

    def test_acyclic_graph_passes_check(self):
        t = self.tree({
            "lib.rs": "pub mod a;\npub mod b;\npub mod c;\nuse crate::a::x;\n",
            "main.rs": "use cc_ci_run::a;\n",
            "a.rs": "use crate::b::{self, Y};\nfn f() { crate::c::g(); }\n",
            "b.rs": "use crate::c;\n",
            "c.rs": "pub fn g() {}\n",
        })
        self.assertEqual(modgraph.graph(t.src), {
            "a": {"b": ("src/a.rs", 1), "c": ("src/a.rs", 2)},
            "b": {"c": ("src/b.rs", 1)},
            "c": {},
        })
        r = t.run("--check")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("  a -> b, c\n", r.stdout)
        self.assertIn("  c -> (nothing)\n", r.stdout)
        self.assertIn("no cycle", r.stdout)

    def test_cycle_through_a_folder_fails_check_and_is_named(self):
        t = self.tree({
            "x/mod.rs": "mod inner;\n",
            "x/inner.rs": "use crate::{w, y::{Z, T}};\n",
            "y.rs": "fn f() {\n    crate::x::go();\n}\n",
            "w.rs": "",
        })
        r = t.run("--check")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("cycle: x -> y -> x", r.stderr)
        self.assertIn("x -> y at src/x/inner.rs:1", r.stderr)
        self.assertIn("y -> x at src/y.rs:2", r.stderr)
        r = t.run("--report")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cycle: x -> y -> x", r.stdout)

    def test_comments_strings_and_macros_are_no_edges(self):
        t = self.tree({
            "a.rs": "\n".join([
                "//! See crate::b for more.",
                "/* crate::b /* nested crate::b */ still a comment crate::b */",
                'const S: &str = "crate::b \\" crate::b";',
                'const R: &str = r#"crate::b " crate::b"#;',
                "const Q: char = '\"'; const E: char = '\\''; fn l<'a>(x: &'a str) {}",
                "macro_rules! m { () => { $crate::b::f() } }",
                "pub(crate) fn f() {} // crate::b",
                "use crate::c;",
            ]) + "\n",
            "b.rs": "use crate::a;\n",
            "c.rs": "",
        })
        self.assertEqual(modgraph.graph(t.src)["a"], {"c": ("src/a.rs", 8)})
        self.assertEqual(t.run("--check").returncode, 0)

    def test_bad_usage_exits_2(self):
        t = self.tree({"a.rs": ""})
        self.assertEqual(t.run().returncode, 2)
        r = subprocess.run([sys.executable, SCRIPT, "--check", "--src", t.src + "/none"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not a directory", r.stderr)

    def test_three_module_cycle_is_one_cycle(self):
        t = self.tree({
            "a.rs": "use crate::b;\n",
            "b.rs": "use crate::c;\n",
            "c.rs": "use crate::a;\nuse crate::d;\n",
            "d.rs": "",
        })
        self.assertEqual(modgraph.cycles(modgraph.graph(t.src)), [["a", "b", "c", "a"]])

    def test_cycle_between_submodules_fails_check_and_is_named(self):
        t = self.tree({
            "lock/mod.rs": "pub mod backend;\npub mod swarm;\npub struct Top;\n",
            "lock/backend.rs": "use super::{Top, swarm::client::Client};\n",
            "lock/swarm/mod.rs": "pub mod client;\n",
            "lock/swarm/client.rs": "fn f() {\n    crate::lock::backend::go();\n}\n",
        })
        self.assertEqual(modgraph.graph(t.src), {"lock": {}})
        r = t.run("--check")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("cycle: lock::backend -> lock::swarm -> lock::backend", r.stderr)
        self.assertIn("lock::backend -> lock::swarm at src/lock/backend.rs:1", r.stderr)
        self.assertIn("lock::swarm -> lock::backend at src/lock/swarm/client.rs:2", r.stderr)
        self.assertEqual(t.run("--layers").returncode, 1)

    def test_super_paths_resolve_from_the_files_module(self):
        t = self.tree({
            "a/mod.rs": "mod x;\nmod y;\nmod z;\nfn own() {}\n",
            "a/x.rs": "use super::own;\nuse super::y::{self, T};\n",
            "a/y.rs": "use self::inner::Q;\nmod inner { pub struct Q; }\nfn f() { super::super::b::g(); }\n",
            "a/z.rs": "use crate::a::{x, y::T as U};\n",
            "b.rs": "pub fn g() {}\n",
        })
        levels = modgraph.level_graphs(t.src)
        self.assertEqual(levels[("a",)], {
            "x": {"y": ("src/a/x.rs", 2)},
            "y": {},
            "z": {"x": ("src/a/z.rs", 1), "y": ("src/a/z.rs", 1)},
        })
        self.assertEqual(levels[()], {"a": {"b": ("src/a/y.rs", 3)}, "b": {}})
        r = t.run("--check")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("  a::z -> x, y\n", r.stdout)
        self.assertIn("no cycle", r.stdout)

    def test_layers_put_each_module_above_what_it_imports(self):
        t = self.tree({
            "a.rs": "use crate::b;\nuse crate::c;\n",
            "b.rs": "use crate::c;\n",
            "c.rs": "",
            "d.rs": "",
        })
        r = t.run("--layers")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "2: a\n1: b\n0: c d\n")


if __name__ == "__main__":
    unittest.main()
