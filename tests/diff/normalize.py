#!/usr/bin/env python3
"""normalize.py -- normalises and compares the outputs of the differential test.

  normalize.py compare ETCD_STEPS FDB_STEPS ALLOWLIST [WORK_DIR]
  normalize.py show STEPS            (prints one run's normalised records)

A STEPS directory is what run_diff.sh writes: steps.tsv (index, name, command) and
NNN.out / NNN.err / NNN.rc per step.

Normalisation, per run:
  * revisions (header.revision, create_revision, mod_revision, compact_revision,
    hash_revision; "compacted revision N"; Revision/CreateRevision/ModRevision in -w fields)
    are replaced by their rank among all distinct positive revisions seen in that run, so
    etcd's 1,2,3... and etcd-fdb's sparse commit versions compare equal when they are in the
    same order; 0 stays 0;
  * cluster_id, member_id, ID, leader -> <cluster_id> / <member_id> (also their hex form in
    simple output); raft_term, raftTerm -> <raft_term>; raftIndex, raftAppliedIndex ->
    <raft_index>; dbSize, dbSizeInUse -> <db_size>; took -> <duration>;
  * ports of 127.0.0.1 / localhost URLs -> <port>; etcdctl's client ids -> <uuid>;
  * etcdctl's JSON log lines on stderr lose ts and target (which hold the time, the
    endpoint and a random client id);
  * base64 keys and values are shown decoded (=text) and strings or lines longer than 200
    characters are replaced by their length and SHA-256 (the comparison stays exact).

A step passes when its normalised records (exit status, stdout, stderr) are equal, or when
they become equal after applying the allowlist entries (ALLOWLIST) whose step pattern
matches it. Every difference is printed; the last line is "N passed, N failed".

Allowlist lines:   STEP_GLOB | SELECTOR | justification
  SELECTOR is  json:PATH  -- removes PATH (dot-separated, * matches any key or index) from
                             the stdout JSON of both sides;
               re:REGEX   -- replaces matches of REGEX in every text line (stdout, stderr)
                             and every JSON string of both sides by <allowed>;
               rc         -- ignores the exit status.
"""
import base64
import difflib
import fnmatch
import hashlib
import json
import os
import re
import sys

REV_KEYS = {"revision", "create_revision", "mod_revision", "compact_revision", "hash_revision"}
FIELDS_REV_RE = re.compile(r'("(?:Revision|CreateRevision|ModRevision|CompactRevision)" : )(\d+)')
COMPACTED_RE = re.compile(r"(compacted revision )(\d+)")
PORT_RE = re.compile(r"\b(127\.0\.0\.1|localhost|\[::1\]):\d+")
UUID_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
TOOK_RE = re.compile(r"(took = )\S+")
LONG = 200


def short(s):
    if len(s) <= LONG:
        return s
    return "<%d chars sha256:%s>" % (len(s), hashlib.sha256(s.encode("utf-8", "surrogateescape")).hexdigest()[:16])


def load_run(d):
    steps = []
    with open(os.path.join(d, "steps.tsv"), encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            sid, name, cmd = (line.split("\t", 2) + ["", ""])[:3]

            def rd(ext):
                p = os.path.join(d, "%s.%s" % (sid, ext))
                try:
                    with open(p, "rb") as g:
                        return g.read().decode("utf-8", "surrogateescape")
                except OSError:
                    return ""
            rc = rd("rc").strip()
            steps.append({"id": sid, "name": name, "cmd": cmd, "out": rd("out"), "err": rd("err"),
                          "rc": int(rc) if rc.lstrip("-").isdigit() else rc})
    return steps


def parse_stdout(text):
    t = text.strip()
    if t[:1] in ("{", "["):
        try:
            return json.loads(t)
        except ValueError:
            pass
    return text.splitlines()


def parse_stderr(text):
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                d = json.loads(line)
                if isinstance(d, dict):
                    d.pop("ts", None)
                    d.pop("target", None)
                    lines.append(d)
                    continue
            except ValueError:
                pass
        lines.append(line)
    return lines


def walk(v, fn, key=None):
    """Rebuilds v, calling fn(key, value) on every scalar (fn returns the replacement)."""
    if isinstance(v, dict):
        return {k: walk(x, fn, k) for k, x in v.items()}
    if isinstance(v, list):
        return [walk(x, fn, key) for x in v]
    return fn(key, v)


class Run:
    def __init__(self, d):
        self.steps = load_run(d)
        for s in self.steps:
            s["stdout"] = parse_stdout(s["out"])
            s["stderr"] = parse_stderr(s["err"])
        revs, members, clusters = set(), set(), set()

        def collect(k, v):
            if isinstance(v, int) and not isinstance(v, bool):
                if k in REV_KEYS and v > 0:
                    revs.add(v)
                elif k in ("member_id", "leader"):
                    members.add(v)
                elif k == "cluster_id":
                    clusters.add(v)
            elif isinstance(v, str):
                for m in FIELDS_REV_RE.finditer(v):
                    revs.add(int(m.group(2)))
                for m in COMPACTED_RE.finditer(v):
                    revs.add(int(m.group(2)))
                for m in re.finditer(r'"MemberID" : (\d+)', v):
                    members.add(int(m.group(1)))
                for m in re.finditer(r'"ClusterID" : (\d+)', v):
                    clusters.add(int(m.group(1)))
            return v
        for s in self.steps:
            walk(s["stdout"], collect)
            walk(s["stderr"], collect)
        self.rank = {r: i + 1 for i, r in enumerate(sorted(revs))}
        self.members = members
        self.clusters = clusters
        self.id_words = {}
        for m in members:
            self.id_words[str(m)] = "<member_id>"
            self.id_words["%x" % m] = "<member_id>"
            self.id_words["%016x" % m] = "<member_id>"
        for c in clusters:
            self.id_words[str(c)] = "<cluster_id>"
            self.id_words["%x" % c] = "<cluster_id>"
        self.id_re = (re.compile(r"\b(" + "|".join(sorted(map(re.escape, self.id_words), key=len, reverse=True)) + r")\b")
                      if self.id_words else None)
        for s in self.steps:
            s["record"] = {"rc": s["rc"], "stdout": self.norm(s["stdout"]), "stderr": self.norm(s["stderr"])}

    def rev(self, v):
        return self.rank.get(v, v if v == 0 else "<unseen revision %d>" % v)

    def text(self, t):
        t = PORT_RE.sub(lambda m: m.group(1) + ":<port>", t)
        t = UUID_RE.sub("<uuid>", t)
        t = TOOK_RE.sub(r"\1<duration>", t)
        t = FIELDS_REV_RE.sub(lambda m: m.group(1) + str(self.rev(int(m.group(2)))), t)
        t = COMPACTED_RE.sub(lambda m: m.group(1) + str(self.rev(int(m.group(2)))), t)
        t = re.sub(r'("ClusterID" : )\d+', r"\1<cluster_id>", t)
        t = re.sub(r'("MemberID" : )\d+', r"\1<member_id>", t)
        t = re.sub(r'("RaftTerm" : )\d+', r"\1<raft_term>", t)
        if self.id_re:
            t = self.id_re.sub(lambda m: self.id_words[m.group(1)], t)
        return short(t)

    def norm(self, v):
        def fn(k, x):
            if isinstance(x, bool) or x is None:
                return x
            if isinstance(x, int):
                if k in REV_KEYS:
                    return self.rev(x)
                if k == "cluster_id":
                    return "<cluster_id>"
                if k in ("member_id", "leader", "ID"):
                    return "<member_id>" if x in self.members else "<id>"
                if k in ("raft_term", "raftTerm"):
                    return "<raft_term>"
                if k in ("raftIndex", "raftAppliedIndex"):
                    return "<raft_index>"
                if k in ("dbSize", "dbSizeInUse"):
                    return "<db_size>"
                return x
            if isinstance(x, str):
                if k == "took":
                    return "<duration>"
                if k in ("key", "value", "range_end"):
                    try:
                        raw = base64.b64decode(x, validate=True)
                        return short("=" + raw.decode("utf-8", "backslashreplace"))
                    except ValueError:
                        pass
                return self.text(x)
            return x
        return walk(v, fn)


# ---- allowlist ----------------------------------------------------------------------------

def load_allowlist(path):
    entries = []
    if not path or not os.path.exists(path):
        return entries
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in line.rstrip("\n").split(" | ", 2)]
            if len(parts) != 3 or not parts[2]:
                sys.exit("%s:%d: expected 'STEP_GLOB | SELECTOR | justification'" % (path, n))
            sel = parts[1]
            if not (sel.startswith("json:") or sel.startswith("re:") or sel == "rc"):
                sys.exit("%s:%d: unknown selector %r" % (path, n, sel))
            entries.append({"glob": parts[0], "sel": sel, "why": parts[2], "line": n, "used": 0})
    return entries


def drop_path(v, path):
    if not path:
        return v
    head, rest = path[0], path[1:]
    if isinstance(v, dict):
        keys = list(v) if head == "*" else [head]
        for k in keys:
            if k in v:
                if rest:
                    v[k] = drop_path(v[k], rest)
                else:
                    del v[k]
    elif isinstance(v, list):
        idx = range(len(v)) if head == "*" else ([int(head)] if head.isdigit() else [])
        if not rest:
            for i in sorted((i for i in idx if i < len(v)), reverse=True):
                del v[i]
        else:
            for i in idx:
                if i < len(v):
                    v[i] = drop_path(v[i], rest)
    return v


def apply_entry(rec, e):
    rec = json.loads(json.dumps(rec))
    sel = e["sel"]
    if sel == "rc":
        rec["rc"] = "<allowed>"
    elif sel.startswith("json:"):
        out = rec["stdout"]
        if isinstance(out, dict) or (isinstance(out, list) and any(not isinstance(x, str) for x in out)):
            rec["stdout"] = drop_path(out, sel[5:].split("."))
    else:
        rx = re.compile(sel[3:])
        rec = walk(rec, lambda k, x: rx.sub("<allowed>", x) if isinstance(x, str) else x)
    return rec


def dump(rec):
    return json.dumps(rec, indent=1, sort_keys=True, ensure_ascii=False).splitlines()


def clip(line, n=400):
    return line if len(line) <= n else line[:n] + "...(%d chars)" % len(line)


def compare(etcd_dir, fdb_dir, allow_path, work=None):
    a, b = Run(etcd_dir), Run(fdb_dir)
    allow = load_allowlist(allow_path)
    passed = failed = 0
    n = max(len(a.steps), len(b.steps))
    for i in range(n):
        sa = a.steps[i] if i < len(a.steps) else None
        sb = b.steps[i] if i < len(b.steps) else None
        name = (sa or sb)["name"]
        if not sa or not sb or sa["name"] != sb["name"]:
            failed += 1
            print("FAIL %s: the step lists differ (etcd: %s, etcd-fdb: %s)"
                  % (name, sa and sa["name"], sb and sb["name"]))
            continue
        ra, rb = sa["record"], sb["record"]
        if work:
            for label, r in (("etcd", ra), ("etcd-fdb", rb)):
                d = os.path.join(work, label, "normalized")
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "%s-%s.json" % (sa["id"], name)), "w", encoding="utf-8",
                          errors="surrogateescape") as f:
                    f.write("\n".join(dump(r)) + "\n")
        if ra == rb:
            passed += 1
            continue
        used = []
        ma, mb = ra, rb
        for e in allow:
            if fnmatch.fnmatchcase(name, e["glob"]):
                na, nb = apply_entry(ma, e), apply_entry(mb, e)
                if na != ma or nb != mb:
                    used.append(e)
                    ma, mb = na, nb
        ok = ma == mb
        # an allowed step shows its whole difference; a failed one what the allowlist left
        da, db = (ra, rb) if ok else (ma, mb)
        diff = list(difflib.unified_diff(dump(da), dump(db), "etcd", "etcd-fdb", n=2, lineterm=""))
        if ok:
            passed += 1
            for e in used:
                e["used"] += 1
            print("ALLOWED %s (%s)" % (name, "; ".join("line %d: %s" % (e["line"], e["why"]) for e in used)))
        else:
            failed += 1
            print("FAIL %s" % name)
            print("  etcd:     etcdctl %s" % clip(sa["cmd"], 200))
            print("  etcd-fdb: etcdctl %s" % clip(sb["cmd"], 200))
            if used:
                print("  (after allowlist lines %s the records still differ)"
                      % ", ".join(str(e["line"]) for e in used))
        for line in diff:
            print("    " + clip(line))
    for e in allow:
        if not e["used"]:
            print("note: allowlist line %d (%s | %s) matched no difference" % (e["line"], e["glob"], e["sel"]))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def show(d):
    r = Run(d)
    for s in r.steps:
        print("### %s %s: etcdctl %s" % (s["id"], s["name"], clip(s["cmd"], 200)))
        print("\n".join(clip(x) for x in dump(s["record"])))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None))
    if len(sys.argv) == 3 and sys.argv[1] == "show":
        show(sys.argv[2])
        sys.exit(0)
    sys.exit(__doc__)
