package tests

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func keys(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}

func wantKeys(t *testing.T, what string, kvs []*mvccpb.KeyValue, want ...string) {
	t.Helper()
	got := keys(kvs)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s: keys %q, want %q", what, got, want)
	}
}

// TestKVBasics: Put/Get/Delete/Txn through clientv3, with etcd's revision model. etcd-fdb's
// revisions are the store's commit versions (README: unique and increasing, but sparse), so
// the test asserts order and equality of revisions, never that they are consecutive.
func TestKVBasics(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)

	rev0 := currentRev(t, c)
	if rev0 < 1 {
		t.Errorf("fresh store revision %d, want >= 1", rev0)
	}
	if again := currentRev(t, c); again != rev0 {
		t.Errorf("a read changed the revision: %d then %d", rev0, again)
	}
	r1 := mustPut(t, c, "a", "1")
	if r1.Header.Revision <= rev0 {
		t.Errorf("first put revision %d, want > %d", r1.Header.Revision, rev0)
	}
	if r1.PrevKv != nil {
		t.Errorf("PrevKv without WithPrevKV: %v", r1.PrevKv)
	}
	r2 := mustPut(t, c, "a", "2", clientv3.WithPrevKV())
	if r2.Header.Revision <= r1.Header.Revision {
		t.Errorf("second put revision %d, want > %d", r2.Header.Revision, r1.Header.Revision)
	}
	if r2.PrevKv == nil || string(r2.PrevKv.Value) != "1" || r2.PrevKv.Version != 1 || r2.PrevKv.ModRevision != r1.Header.Revision {
		t.Errorf("WithPrevKV: prev %+v, want a=1 version 1 mod %d", r2.PrevKv, r1.Header.Revision)
	}
	g := mustGet(t, c, "a")
	if g.Count != 1 || len(g.Kvs) != 1 {
		t.Fatalf("Get a: count %d kvs %d", g.Count, len(g.Kvs))
	}
	kv := g.Kvs[0]
	if string(kv.Value) != "2" || kv.Version != 2 || kv.CreateRevision != r1.Header.Revision || kv.ModRevision != r2.Header.Revision {
		t.Errorf("Get a: %+v, want value 2 version 2 create %d mod %d", kv, r1.Header.Revision, r2.Header.Revision)
	}
	if g.Header.Revision != r2.Header.Revision {
		t.Errorf("Get header revision %d, want the last write's %d", g.Header.Revision, r2.Header.Revision)
	}
	// WithRev reads the past, at and between revisions.
	for _, at := range []int64{r1.Header.Revision, r2.Header.Revision - 1} {
		g = mustGet(t, c, "a", clientv3.WithRev(at))
		if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "1" {
			t.Errorf("Get a WithRev(%d): %v, want a=1", at, g.Kvs)
		}
		if g.Header.Revision != r2.Header.Revision {
			t.Errorf("Get WithRev header revision %d, want the current %d", g.Header.Revision, r2.Header.Revision)
		}
	}
	if g = mustGet(t, c, "a", clientv3.WithRev(r1.Header.Revision-1)); len(g.Kvs) != 0 {
		t.Errorf("Get a before it was written: %v", g.Kvs)
	}
	g = mustGet(t, c, "missing")
	if g.Count != 0 || len(g.Kvs) != 0 {
		t.Errorf("Get missing: %v", g.Kvs)
	}

	putRev := map[string]int64{}
	for _, k := range []string{"b", "c", "d", "e", "f/1", "f/2"} {
		putRev[k] = mustPut(t, c, k, "v"+k).Header.Revision
	}
	wantKeys(t, "WithRange(a,d)", mustGet(t, c, "a", clientv3.WithRange("d")).Kvs, "a", "b", "c")
	wantKeys(t, "WithFromKey(c)", mustGet(t, c, "c", clientv3.WithFromKey()).Kvs, "c", "d", "e", "f/1", "f/2")
	wantKeys(t, "WithPrefix(f/)", mustGet(t, c, "f/", clientv3.WithPrefix()).Kvs, "f/1", "f/2")
	wantKeys(t, "WithPrefix(\"\")", mustGet(t, c, "", clientv3.WithPrefix()).Kvs, "a", "b", "c", "d", "e", "f/1", "f/2")
	wantKeys(t, "WithRange(a,d) WithRev(put of c)", mustGet(t, c, "a", clientv3.WithRange("d"), clientv3.WithRev(putRev["c"])).Kvs, "a", "b", "c")
	wantKeys(t, "WithRange(a,d) WithRev(put of c - 1)", mustGet(t, c, "a", clientv3.WithRange("d"), clientv3.WithRev(putRev["c"]-1)).Kvs, "a", "b")

	// WithLimit + Count: Count is the whole range, More tells there is more.
	g = mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithLimit(2))
	wantKeys(t, "WithLimit(2)", g.Kvs, "a", "b")
	if g.Count != 7 || !g.More {
		t.Errorf("WithLimit(2): count %d more %v, want 7 true", g.Count, g.More)
	}
	g = mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithLimit(7))
	if g.Count != 7 || g.More || len(g.Kvs) != 7 {
		t.Errorf("WithLimit(7): count %d more %v kvs %d, want 7 false 7", g.Count, g.More, len(g.Kvs))
	}
	g = mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithLimit(3), clientv3.WithRev(putRev["c"]))
	if g.Count != 3 || g.More || len(g.Kvs) != 3 {
		t.Errorf("WithLimit(3) WithRev: count %d more %v kvs %d, want 3 false 3", g.Count, g.More, len(g.Kvs))
	}
	g = mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if g.Count != 7 || len(g.Kvs) != 0 {
		t.Errorf("WithCountOnly: count %d kvs %d", g.Count, len(g.Kvs))
	}
	g = mustGet(t, c, "b", clientv3.WithKeysOnly())
	if len(g.Kvs) != 1 || len(g.Kvs[0].Value) != 0 {
		t.Errorf("WithKeysOnly: %v", g.Kvs)
	}

	// WithSort.
	wantKeys(t, "sort key desc limit 3",
		mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(3)).Kvs,
		"f/2", "f/1", "e")
	wantKeys(t, "sort modrev desc",
		mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend)).Kvs,
		"f/2", "f/1", "e", "d", "c", "b", "a")
	wantKeys(t, "sort createrev asc",
		mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend)).Kvs,
		"a", "b", "c", "d", "e", "f/1", "f/2")
	wantKeys(t, "sort version desc limit 1",
		mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByVersion, clientv3.SortDescend), clientv3.WithLimit(1)).Kvs,
		"a")
	mustPut(t, c, "b", "zz")
	wantKeys(t, "sort value desc limit 2",
		mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend), clientv3.WithLimit(2)).Kvs,
		"b", "f/2")
	wantKeys(t, "WithMinModRev(put of f/2)",
		mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithMinModRev(putRev["f/2"])).Kvs, "b", "f/2")
	wantKeys(t, "WithMaxModRev(put of c)",
		mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithMaxModRev(putRev["c"])).Kvs, "a", "c")
	wantKeys(t, "WithMinCreateRev(put of e)",
		mustGet(t, c, "", clientv3.WithPrefix(), clientv3.WithMinCreateRev(putRev["e"])).Kvs, "e", "f/1", "f/2")

	// Delete.
	rev := currentRev(t, c)
	d := mustDelete(t, c, "a", clientv3.WithPrevKV())
	if d.Deleted != 1 || len(d.PrevKvs) != 1 || string(d.PrevKvs[0].Value) != "2" {
		t.Errorf("Delete a WithPrevKV: deleted %d prev %v", d.Deleted, d.PrevKvs)
	}
	if d.Header.Revision <= rev {
		t.Errorf("Delete revision %d, want > %d", d.Header.Revision, rev)
	}
	delRev := d.Header.Revision
	d = mustDelete(t, c, "a")
	if d.Deleted != 0 || d.Header.Revision != delRev {
		t.Errorf("Delete of a missing key: deleted %d revision %d, want 0 and no new revision (%d)", d.Deleted, d.Header.Revision, delRev)
	}
	d = mustDelete(t, c, "f/", clientv3.WithPrefix())
	if d.Deleted != 2 || d.Header.Revision <= delRev {
		t.Errorf("Delete prefix f/: deleted %d revision %d, want 2 at a revision > %d", d.Deleted, d.Header.Revision, delRev)
	}
	if g := mustGet(t, c, "f/1", clientv3.WithRev(d.Header.Revision)); len(g.Kvs) != 0 {
		t.Errorf("f/1 read at its delete revision: %v", g.Kvs)
	}
	if g := mustGet(t, c, "f/", clientv3.WithPrefix(), clientv3.WithRev(d.Header.Revision-1)); len(g.Kvs) != 2 {
		t.Errorf("f/ read just before the delete revision: %v, want both keys", g.Kvs)
	}
	g = mustGet(t, c, "a", clientv3.WithRev(rev))
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "2" {
		t.Errorf("deleted key read at an older revision: %v", g.Kvs)
	}
	// A key put again after a delete starts a new generation.
	p := mustPut(t, c, "a", "new")
	g = mustGet(t, c, "a")
	if g.Kvs[0].Version != 1 || g.Kvs[0].CreateRevision != p.Header.Revision {
		t.Errorf("recreated key: %+v, want version 1 create %d", g.Kvs[0], p.Header.Revision)
	}

	// Txn with compares.
	ctx := ctxT(t, 10*time.Second)
	rev = currentRev(t, c)
	tr, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value("c"), "=", "vc"),
			clientv3.Compare(clientv3.Version("c"), "=", 1),
			clientv3.Compare(clientv3.ModRevision("c"), "=", putRev["c"]),
			clientv3.Compare(clientv3.CreateRevision("missing"), "=", 0)).
		Then(clientv3.OpPut("c", "c2"), clientv3.OpPut("t1", "x"), clientv3.OpGet("c")).
		Else(clientv3.OpPut("else", "x")).
		Commit()
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	if !tr.Succeeded || len(tr.Responses) != 3 {
		t.Fatalf("Txn: succeeded %v responses %d", tr.Succeeded, len(tr.Responses))
	}
	if rr := tr.Responses[2].GetResponseRange(); rr == nil || len(rr.Kvs) != 1 || string(rr.Kvs[0].Value) != "c2" {
		t.Errorf("Txn Get after Put in the same txn: %v", rr)
	}
	g = mustGet(t, c, "c", clientv3.WithRange("u"))
	txnRev := int64(-1)
	for _, kv := range g.Kvs {
		switch string(kv.Key) {
		case "c", "t1":
			if txnRev == -1 {
				txnRev = kv.ModRevision
			} else if kv.ModRevision != txnRev {
				t.Errorf("the keys one txn wrote have different mod revisions: %d and %d", txnRev, kv.ModRevision)
			}
		}
	}
	if txnRev <= rev {
		t.Errorf("txn keys' mod revision %d, want > %d", txnRev, rev)
	}
	if rr := tr.Responses[2].GetResponseRange(); rr != nil && len(rr.Kvs) == 1 && rr.Kvs[0].ModRevision != txnRev {
		t.Errorf("Txn Get after Put: mod revision %d, want the txn's revision %d", rr.Kvs[0].ModRevision, txnRev)
	}
	tr, err = c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value("c"), "=", "not-c2")).
		Then(clientv3.OpPut("then", "x")).
		Else(clientv3.OpPut("else", "y"), clientv3.OpDelete("t1")).
		Commit()
	if err != nil {
		t.Fatalf("Txn else: %v", err)
	}
	if tr.Succeeded || len(tr.Responses) != 2 || tr.Responses[1].GetResponseDeleteRange().GetDeleted() != 1 {
		t.Errorf("Txn else branch: succeeded %v responses %v", tr.Succeeded, tr.Responses)
	}
	if n := mustGet(t, c, "then").Count; n != 0 {
		t.Errorf("then branch applied although the compare failed")
	}
	if g := mustGet(t, c, "else"); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "y" {
		t.Errorf("else branch put: %v", g.Kvs)
	}
	tr, err = c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("c"), "<", txnRev)).Commit()
	if err != nil || tr.Succeeded {
		t.Errorf("compare mod revision < its own: err %v", err)
	}
	tr, err = c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision("c"), "=", putRev["c"])).Commit()
	if err != nil || !tr.Succeeded {
		t.Errorf("compare create revision: err %v", err)
	}
	// A compare over a range (etcd >= 3.3): every key of the prefix must match.
	mustPut(t, c, "r/1", "x")
	mustPut(t, c, "r/2", "y")
	tr, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Value("r/").WithPrefix(), "=", "x")).Commit()
	if err != nil || tr.Succeeded {
		t.Errorf("range compare value = x over r/1=x r/2=y: succeeded %v err %v, want false", tr != nil && tr.Succeeded, err)
	}
	tr, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Version("r/").WithPrefix(), ">", 0)).Commit()
	if err != nil || !tr.Succeeded {
		t.Errorf("range compare version > 0: err %v", err)
	}
	// A read-only txn makes no revision.
	rev = currentRev(t, c)
	tr, err = c.Txn(ctx).Then(clientv3.OpGet("c")).Commit()
	if err != nil || tr.Header.Revision != rev {
		t.Errorf("read-only txn: err %v revision %d, want %d", err, tr.Header.Revision, rev)
	}
	if after := currentRev(t, c); after != rev {
		t.Errorf("a read-only txn made a revision: %d -> %d", rev, after)
	}
	// A nested txn.
	tr, err = c.Txn(ctx).Then(clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.Value("c"), "=", "c2")},
		[]clientv3.Op{clientv3.OpPut("nested", "yes")}, nil)).Commit()
	if err != nil {
		t.Fatalf("nested txn: %v", err)
	}
	if nt := tr.Responses[0].GetResponseTxn(); nt == nil || !nt.Succeeded {
		t.Errorf("nested txn response: %v", tr.Responses[0])
	}
	if g := mustGet(t, c, "nested"); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "yes" {
		t.Errorf("nested txn put: %v", g.Kvs)
	}

	// Compaction.
	c1 := mustPut(t, c, "c", "c3").Header.Revision
	c2 := mustPut(t, c, "c", "c4").Header.Revision
	mustPut(t, c, "c", "c5")
	if _, err := c.Compact(ctx, c2); err != nil {
		t.Fatalf("Compact(%d): %v", c2, err)
	}
	if _, err := c.Get(ctx, "c", clientv3.WithRev(c1)); !isErr(err, rpctypes.ErrCompacted) {
		t.Errorf("Get WithRev below the compaction: %v, want %v", err, rpctypes.ErrCompacted)
	}
	if g, err := c.Get(ctx, "c", clientv3.WithRev(c2)); err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "c4" {
		t.Errorf("Get WithRev at the compaction revision: %v %v, want c=c4", err, g)
	}
	if _, err := c.Compact(ctx, c2); !isErr(err, rpctypes.ErrCompacted) {
		t.Errorf("Compact again at the same revision: %v, want %v", err, rpctypes.ErrCompacted)
	}
	if _, err := c.Compact(ctx, currentRev(t, c)+1000000); !isErr(err, rpctypes.ErrFutureRev) {
		t.Errorf("Compact a future revision: %v, want %v", err, rpctypes.ErrFutureRev)
	}
}

// TestKVErrors: etcd's errors reach clientv3 as its typed errors.
func TestKVErrors(t *testing.T) {
	s := startServer(t, serverOpts{args: []string{"--max-txn-ops", "4", "--max-request-bytes", "4096"}})
	c := s.client(t)
	ctx := ctxT(t, 30*time.Second)

	for i := 0; i < 5; i++ {
		mustPut(t, c, "k", string(rune('a'+i)))
	}
	cur := currentRev(t, c)
	if _, err := c.Compact(ctx, cur-1); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	check := func(what string, err, want error) {
		t.Helper()
		if !isErr(err, want) {
			t.Errorf("%s: error %v, want %v", what, err, want)
		}
	}
	_, err := c.Get(ctx, "k", clientv3.WithRev(cur-2))
	check("Get below the compaction", err, rpctypes.ErrCompacted)
	_, err = c.Get(ctx, "k", clientv3.WithRev(cur+10))
	check("Get a future revision", err, rpctypes.ErrFutureRev)
	_, err = c.Put(ctx, "", "v")
	check("Put an empty key", err, rpctypes.ErrEmptyKey)
	_, err = c.Get(ctx, "")
	check("Get an empty key", err, rpctypes.ErrEmptyKey)

	ops := func(n int) []clientv3.Op {
		var o []clientv3.Op
		for i := 0; i < n; i++ {
			o = append(o, clientv3.OpPut("op"+string(rune('0'+i)), "v"))
		}
		return o
	}
	if _, err := c.Txn(ctx).Then(ops(4)...).Commit(); err != nil {
		t.Errorf("Txn of 4 ops with --max-txn-ops 4: %v", err)
	}
	_, err = c.Txn(ctx).Then(ops(5)...).Commit()
	check("Txn of 5 ops with --max-txn-ops 4", err, rpctypes.ErrTooManyOps)
	_, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Version("k"), ">", 0)).Then(ops(2)...).Else(ops(5)...).Commit()
	check("Txn with 5 ops in its else branch", err, rpctypes.ErrTooManyOps)
	_, err = c.Txn(ctx).Then(clientv3.OpPut("dup", "1"), clientv3.OpPut("dup", "2")).Commit()
	check("Txn putting one key twice", err, rpctypes.ErrDuplicateKey)
	_, err = c.Txn(ctx).Then(clientv3.OpPut("dup/a", "1"), clientv3.OpDelete("dup/", clientv3.WithPrefix())).Commit()
	check("Txn putting a key it also deletes", err, rpctypes.ErrDuplicateKey)

	big := strings.Repeat("x", 8192)
	_, err = c.Put(ctx, "big", big)
	check("Put larger than --max-request-bytes", err, rpctypes.ErrRequestTooLarge)
	if _, err := c.Put(ctx, "small", strings.Repeat("x", 1000)); err != nil {
		t.Errorf("Put below --max-request-bytes: %v", err)
	}

	_, err = c.Put(ctx, "missing", "", clientv3.WithIgnoreValue())
	check("Put IgnoreValue on a missing key", err, rpctypes.ErrKeyNotFound)
	_, err = c.Put(ctx, "k", "v", clientv3.WithIgnoreValue())
	check("Put IgnoreValue with a value", err, rpctypes.ErrValueProvided)
	pr, err := c.Put(ctx, "k", "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV())
	if err != nil {
		t.Errorf("Put IgnoreValue on an existing key: %v", err)
	} else if g := mustGet(t, c, "k"); string(g.Kvs[0].Value) != "e" || g.Kvs[0].ModRevision != pr.Header.Revision {
		t.Errorf("Put IgnoreValue: %+v, want value e kept at a new revision %d", g.Kvs[0], pr.Header.Revision)
	}
	_, err = c.Put(ctx, "k", "v", clientv3.WithLease(clientv3.LeaseID(12345)))
	check("Put with an unknown lease", err, rpctypes.ErrLeaseNotFound)
	// The server still serves after all these errors.
	mustPut(t, c, "after", "ok")
}

// TestKVTxnHeaderRevision: a Txn that writes answers with header.revision = its own revision
// (etcd's applyTxn: the read revision + 1 when the txn changed something), the mod revision
// of the keys it wrote; a Txn that writes nothing answers with the current revision.
func TestKVTxnHeaderRevision(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 10*time.Second)
	mustPut(t, c, "k", "v0")
	for _, branch := range []string{"then", "else"} {
		before := currentRev(t, c)
		want := "v0"
		if branch == "else" {
			want = "nope"
		}
		tr, err := c.Txn(ctx).
			If(clientv3.Compare(clientv3.Value("k"), "=", want)).
			Then(clientv3.OpPut("k", "v1"), clientv3.OpGet("k")).
			Else(clientv3.OpPut("k", "v2"), clientv3.OpDelete("other")).
			Commit()
		if err != nil {
			t.Fatalf("Txn: %v", err)
		}
		if tr.Succeeded != (branch == "then") {
			t.Fatalf("Txn took the wrong branch")
		}
		g := mustGet(t, c, "k")
		written := g.Kvs[0].ModRevision
		if tr.Header.Revision != written || written <= before {
			t.Errorf("%s branch: Txn header revision %d, want the txn's revision %d (the revision before the txn was %d)",
				branch, tr.Header.Revision, written, before)
		}
		if pr := tr.Responses[0].GetResponsePut(); pr != nil && pr.Header.Revision != written {
			t.Errorf("%s branch: Put sub-response header revision %d, want %d", branch, pr.Header.Revision, written)
		}
	}
	before := currentRev(t, c)
	tr, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "nope")).Then(clientv3.OpPut("k", "x")).Commit()
	if err != nil || tr.Header.Revision != before {
		t.Errorf("Txn that writes nothing: err %v header revision %d, want the current %d", err, tr.Header.Revision, before)
	}
}

// TestKVTxnReadsOwnWrites: a Txn's Get sees the Txn's own earlier writes, also when the
// range it reads holds nothing else (an empty store range merged with the txn's writes).
func TestKVTxnReadsOwnWrites(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 10*time.Second)
	tr, err := c.Txn(ctx).Then(
		clientv3.OpPut("own/a", "1"),
		clientv3.OpGet("missing"),
		clientv3.OpGet("own/", clientv3.WithPrefix()),
		clientv3.OpDelete("nothing/", clientv3.WithPrefix()),
		clientv3.OpGet("nothing/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		t.Fatalf("Txn put + get of a missing key: %v", err)
	}
	if rr := tr.Responses[1].GetResponseRange(); rr == nil || len(rr.Kvs) != 0 || rr.Count != 0 {
		t.Errorf("Get of a missing key inside a txn: %v", rr)
	}
	if rr := tr.Responses[2].GetResponseRange(); rr == nil || len(rr.Kvs) != 1 || string(rr.Kvs[0].Value) != "1" {
		t.Errorf("Get of the txn's own put: %v", rr)
	}
	if dr := tr.Responses[3].GetResponseDeleteRange(); dr == nil || dr.Deleted != 0 {
		t.Errorf("Delete of an empty range inside a txn: %v", dr)
	}
	if g := mustGet(t, c, "own/a"); len(g.Kvs) != 1 {
		t.Errorf("the txn's put: %v", g.Kvs)
	}
}

// TestKVConcurrentCAS: compare-and-swap increments of one counter from 8 clients (a Txn
// comparing the mod revision it read, then putting value+1) are serializable: no two
// succeed from the same mod revision, and no increment is lost. With ETCD_FDB_FAULTS the
// store's futures complete after random delays, which widens the window between a
// transaction's reads and its commit.
func TestKVConcurrentCAS(t *testing.T) {
	for _, faults := range []string{"", "11:1"} {
		t.Run("faults="+faults, func(t *testing.T) {
			var env []string
			if faults != "" {
				env = []string{"ETCD_FDB_FAULTS=" + faults}
			}
			s := startServer(t, serverOpts{env: env})
			c := s.client(t)
			ctx := ctxT(t, 60*time.Second)
			mustPut(t, c, "ctr", "0")
			var mu sync.Mutex
			succeeded, maybe := 0, 0
			from := map[int64]int{}
			deadline := time.Now().Add(5 * time.Second)
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(deadline) {
						g, err := c.Get(ctx, "ctr")
						if err != nil || len(g.Kvs) != 1 {
							t.Errorf("Get ctr: %v", err)
							return
						}
						v, _ := strconv.Atoi(string(g.Kvs[0].Value))
						mod := g.Kvs[0].ModRevision
						tr, err := c.Txn(ctx).
							If(clientv3.Compare(clientv3.ModRevision("ctr"), "=", mod)).
							Then(clientv3.OpPut("ctr", strconv.Itoa(v+1))).
							Commit()
						if err != nil { // e.g. a timeout under faults: the outcome is unknown
							mu.Lock()
							maybe++
							mu.Unlock()
							continue
						}
						if tr.Succeeded {
							mu.Lock()
							succeeded++
							from[mod]++
							if from[mod] == 2 {
								t.Errorf("two CAS transactions succeeded comparing mod_revision = %d (a lost update)", mod)
							}
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			g := mustGet(t, c, "ctr")
			v, _ := strconv.Atoi(string(g.Kvs[0].Value))
			t.Logf("%d successful increments (%d of unknown outcome), counter %d, version %d", succeeded, maybe, v, g.Kvs[0].Version)
			if v < succeeded || v > succeeded+maybe || g.Kvs[0].Version != int64(v)+1 {
				t.Errorf("counter %d (version %d) after %d successful increments and %d of unknown outcome", v, g.Kvs[0].Version, succeeded, maybe)
			}
		})
	}
}
