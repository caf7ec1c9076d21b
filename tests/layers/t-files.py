#!/usr/bin/env python3
"""t-files - the shape the tree promises (issue 14), checked on every run:
  no_file_circles   no two object files need each other, directly or around
                    a longer circle (strongly connected components of the
                    "uses a symbol defined in" graph of the layer libraries)
  files_small       no source file over 800 lines
  functions_small   no function over 100 lines (from its name line to the
                    closing brace at column 0, as the style writes them)
Run from the top of the tree with KM_BUILD naming the build directory."""
import collections
import glob
import os
import re
import subprocess
import sys

TOP = os.environ.get("KM_TOP", os.getcwd())
BUILD = os.environ.get("KM_BUILD", os.path.join(TOP, "build"))
SRC_DIRS = ["base", "conf", "keyclient", "milter", "kmctl"]
FILE_MAX, FUNC_MAX = 800, 100
failed = 0


def result(name, problems):
    global failed
    if problems:
        failed += 1
        print("FAIL %s: %s" % (name, "; ".join(problems)))
    else:
        print("PASS %s" % name)


def symbols(obj):
    out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "TDBRC":
            defined.add(f[2])
        elif len(f) == 2 and f[0] == "U":
            used.add(f[1])
    return defined, used


def circles():
    objs = [o for d in SRC_DIRS for o in glob.glob(os.path.join(BUILD, "obj", d, "*.o"))]
    if not objs:
        return ["no object files under %s/obj (build first)" % BUILD]
    owner, uses = {}, {}
    for o in objs:
        d, u = symbols(o)
        uses[o] = u
        for s in d:
            owner[s] = o
    graph = collections.defaultdict(set)
    for o, u in uses.items():
        graph[o] |= {owner[s] for s in u if s in owner and owner[s] != o}
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):                   # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(os.path.relpath(w, os.path.join(BUILD, "obj")))
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(" <-> ".join(sorted(comp)))

    sys.setrecursionlimit(10000)
    for o in objs:
        if o not in index:
            visit(o)
    return comps


def sources():
    return sorted(f for d in SRC_DIRS for f in glob.glob(os.path.join(TOP, d, "*.[ch]")))


def big_files():
    out = []
    for f in sources():
        n = sum(1 for _ in open(f, encoding="utf-8", errors="replace"))
        if n > FILE_MAX:
            out.append("%s has %d lines" % (os.path.relpath(f, TOP), n))
    return out


def long_functions():
    out = []
    start = re.compile(r"^([a-z_][a-z_0-9]*)\(")
    for f in sources():
        if not f.endswith(".c"):
            continue
        name, first = None, 0
        for no, line in enumerate(open(f, encoding="utf-8", errors="replace"), 1):
            m = start.match(line)
            if m:
                name, first = m.group(1), no
            elif line.startswith("}") and name:
                if no - first > FUNC_MAX:
                    out.append("%s:%s has %d lines" % (os.path.relpath(f, TOP), name, no - first))
                name = None
    return out


result("no_file_circles", circles())
result("files_small", big_files())
result("functions_small", long_functions())
sys.exit(1 if failed else 0)
