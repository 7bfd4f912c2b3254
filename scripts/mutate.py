"""Hand-rolled AST mutation testing for switchtrace (one mutant at a time).

usage (from the checkout's root, FILE relative to it, e.g.
src/switchtrace/tracer/record.py; FUNCS a comma-separated list of function
names, or - for all):
  python scripts/mutate.py list  FILE [FUNCS]                 -> prints mutants
  python scripts/mutate.py run   FILE FUNCS OUT.jsonl -- TESTS -> runs mutants, appends results
  python scripts/mutate.py show  FILE ID [FUNCS]              -> prints the diff of one mutant
  python scripts/mutate.py apply FILE ID [FUNCS]              -> writes the mutant into WORK
  python scripts/mutate.py restore FILE                       -> writes FILE back into WORK

Each mutant replaces one source span (taken from AST positions) of a copy of
FILE in WORK ($MUT_WORK, a copy of the checkout made there when it does not
exist yet), runs ``pytest -x -q`` on TESTS there with this interpreter, and
appends killed / survived / timeout to OUT.jsonl (a rerun skips the mutants
already in it). $MUT_TIMEOUT is a mutant's limit in seconds (120), $BUDGET
the run's (none), $ONLY a comma-separated list of the ids to run. The
mutations: comparisons swapped, and/or, not dropped, an if negated,
True/False, integers +-1, a statement dropped, return None. Mutant ids
depend on the source's text: list them again after changing it. Not part of
the suite; how the mutants were judged is in git's log (search it for
"mutation testing").
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

CLONE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.environ.get("MUT_WORK", os.path.join(CLONE, ".mutants"))

CMP_SWAP = {
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
}


def _funcs_of(tree: ast.AST, wanted: set[str] | None):
    """(qualname, node) for every function/method, nested included."""
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                q = prefix + child.name
                out.append((q, child))
                visit(child, q + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    if wanted is None:
        return out
    return [(q, n) for q, n in out if q in wanted or q.split(".")[0] in wanted]


def _owned_nodes(func):
    """Nodes of ``func`` not inside a nested function (those are mutated as their own)."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield n
        stack.extend(ast.iter_child_nodes(n))


def _is_docstring(stmt, parent_body):
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def mutants(path: str, wanted: set[str] | None):
    src = open(path).read()
    lines = src.splitlines(keepends=True)
    tree = ast.parse(src)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def span(node):
        start = offsets[node.lineno - 1] + len(
            lines[node.lineno - 1].encode()[: node.col_offset].decode()
        )
        end = offsets[node.end_lineno - 1] + len(
            lines[node.end_lineno - 1].encode()[: node.end_col_offset].decode()
        )
        return start, end

    out = []
    seen = set()

    def add(func, node, kind, new_text):
        s, e = span(node)
        key = (s, e, new_text)
        if key in seen or src[s:e] == new_text:
            return
        seen.add(key)
        out.append(
            {
                "func": func,
                "line": node.lineno,
                "kind": kind,
                "start": s,
                "end": e,
                "old": src[s:e],
                "new": new_text,
            }
        )

    for qual, func in _funcs_of(tree, wanted):
        for node in _owned_nodes(func):
            if isinstance(node, ast.Assign) and "__traceback_hide__" in ast.unparse(node):
                continue
            if isinstance(node, ast.Compare):
                for i, op in enumerate(node.ops):
                    swap = CMP_SWAP.get(type(op))
                    if swap is None:
                        continue
                    m = ast.Compare(
                        left=node.left, ops=list(node.ops), comparators=node.comparators
                    )
                    m.ops[i] = swap()
                    add(qual, node, f"cmp {type(op).__name__}->{swap.__name__}", ast.unparse(m))
            elif isinstance(node, ast.BoolOp):
                other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
                add(qual, node, "boolop", ast.unparse(ast.BoolOp(op=other, values=node.values)))
                if len(node.values) > 2:
                    # drop one operand
                    for i in range(len(node.values)):
                        vals = node.values[:i] + node.values[i + 1 :]
                        add(
                            qual,
                            node,
                            f"boolop drop #{i}",
                            "(" + ast.unparse(ast.BoolOp(op=node.op, values=vals)) + ")",
                        )
                else:
                    for i in range(2):
                        add(
                            qual, node, f"boolop keep #{i}", "(" + ast.unparse(node.values[i]) + ")"
                        )
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                add(qual, node, "drop not", "(" + ast.unparse(node.operand) + ")")
            elif isinstance(node, ast.Constant):
                v = node.value
                if v is True:
                    add(qual, node, "True->False", "False")
                elif v is False:
                    add(qual, node, "False->True", "True")
                elif type(v) is int:
                    add(qual, node, "int+1", repr(v + 1))
                    add(qual, node, "int-1", repr(v - 1))
            elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
                other = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
                add(qual, node, "binop", ast.unparse(ast.BinOp(node.left, other, node.right)))
            elif isinstance(node, ast.AugAssign):
                add(qual, node, "drop augassign", "pass")
            if isinstance(node, ast.If):
                add(qual, node.test, "negate if", "not (" + ast.unparse(node.test) + ")")
            if isinstance(node, ast.Return) and node.value is not None:
                if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                    add(qual, node, "return None", "return None")
            if isinstance(node, (ast.Expr, ast.Assign, ast.AnnAssign)) and not _is_docstring(
                node, None
            ):
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                    continue
                if "__traceback_hide__" in ast.unparse(node):
                    continue
                add(qual, node, "drop stmt", "pass")
            if isinstance(node, ast.ExceptHandler):
                body = node.body
                if not (len(body) == 1 and isinstance(body[0], ast.Pass)):
                    # replace the whole handler body with pass
                    s = span(body[0])[0]
                    e = span(body[-1])[1]
                    key = (s, e, "pass")
                    if key not in seen and not any(isinstance(b, ast.Raise) for b in body[-1:]):
                        seen.add(key)
                        out.append(
                            {
                                "func": qual,
                                "line": body[0].lineno,
                                "kind": "except body -> pass",
                                "start": s,
                                "end": e,
                                "old": src[s:e],
                                "new": "pass",
                            }
                        )
    out.sort(key=lambda m: (m["start"], m["end"], m["kind"]))
    for i, m in enumerate(out):
        m["id"] = i
    return src, out


def mutated(src, m):
    return src[: m["start"]] + m["new"] + src[m["end"] :]


def diff(src, m, name):
    new = mutated(src, m)
    return "".join(
        difflib.unified_diff(
            src.splitlines(True), new.splitlines(True), name, name + " (mutant)", n=1
        )
    )


def write_work(rel, text):
    target = os.path.join(WORK, rel)
    with open(target, "w") as f:
        f.write(text)
    d = os.path.join(os.path.dirname(target), "__pycache__")
    base = os.path.splitext(os.path.basename(target))[0]
    if os.path.isdir(d):
        for p in os.listdir(d):
            if p.startswith(base + "."):
                os.remove(os.path.join(d, p))


def run_tests(tests, timeout):
    env = dict(os.environ)
    prefix = os.environ.get("MUT_PYPATH_PREFIX")
    env["PYTHONPATH"] = (prefix + ":" if prefix else "") + f"{WORK}/src:{WORK}"
    env["CI"] = "true"
    # Inherited by everything the tests start, the servers that ``switchtrace
    # bench --driver server`` starts in sessions of their own included, which
    # the group's kill below does not reach: see _kill_leftovers.
    marker = f"MUT_RUN={os.getpid()}.{time.monotonic_ns()}"
    env["MUT_RUN"] = marker.split("=", 1)[1]
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "timeout=30",
        *tests,
    ]
    t0 = time.time()
    p = subprocess.Popen(
        cmd,
        cwd=WORK,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    try:
        outp, _ = p.communicate(timeout=timeout)
        status = "survived" if p.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _kill_leftovers(marker)  # they may hold the output open
        outp, _ = p.communicate()
        status = "timeout"
    _kill_leftovers(marker)
    tail = [line for line in outp.splitlines() if line.startswith(("FAILED", "ERROR"))][:2]
    last = outp.strip().splitlines()[-1] if outp.strip() else ""
    return status, time.time() - t0, tail, last


def _kill_leftovers(marker: str) -> None:
    """Kill the processes a mutant's run left (those whose environment has
    ``marker``): a mutant that stops a server badly leaves it running, on its
    port and with the run's output open, and Linux gives no other way to find
    a process in a session of its own."""
    needle = marker.encode() + b"\0"
    for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else []):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def main():
    if not os.path.isdir(WORK):
        shutil.copytree(CLONE, WORK, ignore=shutil.ignore_patterns(".git", ".mutants", ".nox"))
    cmd = sys.argv[1]
    rel = sys.argv[2]
    path = os.path.join(CLONE, rel)
    if cmd == "list":
        wanted = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else None
        src, ms = mutants(path, wanted)
        for m in ms:
            print(
                m["id"],
                m["func"],
                m["line"],
                m["kind"],
                repr(m["old"][:60]),
                "->",
                repr(m["new"][:60]),
            )
        print(len(ms), "mutants", file=sys.stderr)
    elif cmd == "show":
        wanted = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else None
        src, ms = mutants(path, wanted)
        print(diff(src, ms[int(sys.argv[3])], rel))
    elif cmd == "apply":  # apply FILE ID FUNCS -> writes into WORK
        wanted = set(sys.argv[4].split(",")) if len(sys.argv) > 4 and sys.argv[4] != "-" else None
        src, ms = mutants(path, wanted)
        write_work(rel, mutated(src, ms[int(sys.argv[3])]))
    elif cmd == "restore":
        write_work(rel, open(path).read())
    elif cmd == "run":
        wanted = set(sys.argv[3].split(",")) if sys.argv[3] != "-" else None
        out = sys.argv[4]
        sep = sys.argv.index("--")
        tests = sys.argv[sep + 1 :]
        only = os.environ.get("ONLY")
        budget = float(os.environ.get("BUDGET", "1e9"))
        src, ms = mutants(path, wanted)
        done = set()
        if os.path.exists(out):
            for line in open(out):
                done.add(json.loads(line)["id"])
        only_ids = set(map(int, only.split(","))) if only else None
        t_start = time.time()
        try:
            for m in ms:
                if m["id"] in done or (only_ids is not None and m["id"] not in only_ids):
                    continue
                if time.time() - t_start > budget:
                    print("budget exhausted", flush=True)
                    break
                write_work(rel, mutated(src, m))
                status, secs, tail, last = run_tests(
                    tests, float(os.environ.get("MUT_TIMEOUT", "120"))
                )
                rec = {k: m[k] for k in ("id", "func", "line", "kind", "old", "new")}
                rec.update(status=status, secs=round(secs, 1), fail=tail, last=last)
                with open(out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(m["id"], status, f"{secs:.1f}s", m["func"], m["line"], m["kind"], flush=True)
        finally:
            write_work(rel, src)


if __name__ == "__main__":
    main()
