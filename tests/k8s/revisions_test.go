package k8s

// etcd-fdb's revisions are commit versions of its store: unique and increasing, but sparse
// (about 1,000,000 per second), not 1, 2, 3. A few upstream subtests compute the revision
// that the next write gets as "revision of the previous write + 1" (RunTestList's
// currentRV := continueRV+1 after a compaction write, RunTestConsistentList's
// consistentRV := lastWrite+1, continueRV+2 as a "future" revision). Those subtests are not
// run (skippedSubtests below; README.md lists them); the tests in this file check the same
// properties with the revisions etcd-fdb actually returned.

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
)

// skippedSubtests are the upstream subtests that assume dense revisions. Each is a -test.skip
// pattern (one regular expression per level of the test name).
var skippedSubtests = []string{
	// RunTestList: currentRV := continueRV+1 (the compaction's write is assumed to get the
	// next revision); "future" is continueRV+2, which on etcd-fdb is a past revision.
	`^TestList$/^rangeStream=(true|false)$/^test_consistent_List$`,
	`^TestList$/^rangeStream=(true|false)$/^test_List_with_limit$`,
	`^TestList$/^rangeStream=(true|false)$/^test_List_with_future_resource_version,_match=Exact$`,
	`^TestList$/^rangeStream=(true|false)$/^test_List_with_continue_from_second_pod,_negative_resource_version_gives_consistent_read$`,
	`^TestList$/^rangeStream=(true|false)$/^test_List_with_continue_from_second_pod_and_limit,_negative_resource_version_gives_consistent_read$`,
	`^TestList$/^rangeStream=(true|false)$/^test_List_with_continue_from_third_pod,_negative_resource_version_gives_consistent_read$`,
	// RunTestConsistentList: consistentRV := lastResourceWriteRV+1, then +1 per write.
	`^TestConsistentList$/^rangeStream=(true|false)$/`,
}

// TestMain adds skippedSubtests to -test.skip, unless ETCD_FDB_K8S_RUN_ALL=1.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("ETCD_FDB_K8S_RUN_ALL") != "1" {
		skip := strings.Join(skippedSubtests, "|")
		if cur := flag.Lookup("test.skip").Value.String(); cur != "" {
			skip = cur + "|" + skip
		}
		if err := flag.Set("test.skip", skip); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("not run (they assume etcd's dense revision numbering; see README.md):\n  %s\n",
			strings.Join(skippedSubtests, "\n  "))
	}
	os.Exit(m.Run())
}

func mustRV(t *testing.T, rv string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(rv, 10, 64)
	require.NoError(t, err)
	return v
}

func podKey(p *example.Pod) string { return fmt.Sprintf("/pods/%s/%s", p.Namespace, p.Name) }

// encodeContinue is storagetesting's encodeContinueOrDie.
func encodeContinue(t *testing.T, key string, rv int64) string {
	t.Helper()
	const dummyPrefix = "adapter"
	token, err := storage.EncodeContinue(dummyPrefix+key, dummyPrefix, rv)
	require.NoError(t, err)
	return token
}

// TestListAtCurrentRevision is RunTestList's revision-arithmetic subtests with the real
// revision: after seeding, a List, and a compaction (a write of compact_rev_key), the current
// revision is that write's revision. Consistent lists, limited lists, continuations with a
// negative revision must all answer at it; an exact list beyond it is "too large".
func TestListAtCurrentRevision(t *testing.T) {
	ctx, store := testSetup(t)
	pods := []*example.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "first", Name: "bar"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "second", Name: "bar"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "second", Name: "foo"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "third", Name: "barfoo"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "third", Name: "foo"}},
	}
	var created []*example.Pod
	for _, p := range pods {
		out := &example.Pod{}
		require.NoError(t, store.Create(ctx, podKey(p), p, out, 0))
		created = append(created, out)
	}
	list := &example.PodList{}
	require.NoError(t, store.GetList(ctx, "/pods/second", storage.ListOptions{Predicate: storage.Everything, Recursive: true}, list))
	continueRV := mustRV(t, list.ResourceVersion)
	require.Equal(t, mustRV(t, created[len(created)-1].ResourceVersion), continueRV,
		"a consistent list answers at the last write's revision")

	compactStorage(store)(ctx, t, created[0].ResourceVersion)
	resp, err := store.client.KV.Get(ctx, "compact_rev_key")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	currentRV := resp.Kvs[0].ModRevision
	require.Greater(t, currentRV, continueRV)
	got, err := store.GetCurrentResourceVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(currentRV), got, "the compaction's write is the newest revision")

	type tc struct {
		name            string
		prefix          string
		rv              string
		rvMatch         metav1.ResourceVersionMatch
		pred            storage.SelectionPredicate
		expectedOut     []example.Pod
		expectContinue  string // exact token
		expectRemaining *int64
		expectTooLarge  bool
	}
	everything := func(limit int64, cont string) storage.SelectionPredicate {
		return storage.SelectionPredicate{Label: labels.Everything(), Field: fields.Everything(), Limit: limit, Continue: cont}
	}
	two := int64(2)
	one := int64(1)
	tcs := []tc{
		{name: "test consistent List", prefix: "/pods/empty", pred: storage.Everything, expectedOut: []example.Pod{}},
		{name: "test List with limit", prefix: "/pods/second/", pred: everything(1, ""),
			expectedOut: []example.Pod{*created[1]}, expectContinue: encodeContinue(t, created[1].Name+"\x00", currentRV), expectRemaining: &one},
		{name: "test List with next revision, match=Exact", prefix: "/pods/", rv: fmt.Sprint(currentRV + 1),
			rvMatch: metav1.ResourceVersionMatchExact, pred: storage.Everything, expectTooLarge: true},
		{name: "test List with far future resource version, match=Exact", prefix: "/pods/", rv: fmt.Sprint(currentRV + 1_000_000_000),
			rvMatch: metav1.ResourceVersionMatchExact, pred: storage.Everything, expectTooLarge: true},
		{name: "test List with continue from second pod, negative resource version gives consistent read", prefix: "/pods/",
			pred:        everything(0, encodeContinue(t, created[0].Namespace+"/"+created[0].Name+"\x00", -1)),
			expectedOut: []example.Pod{*created[1], *created[2], *created[3], *created[4]}},
		{name: "test List with continue from second pod and limit, negative resource version gives consistent read", prefix: "/pods/",
			pred:           everything(2, encodeContinue(t, created[0].Namespace+"/"+created[0].Name+"\x00", -1)),
			expectedOut:    []example.Pod{*created[1], *created[2]},
			expectContinue: encodeContinue(t, created[2].Namespace+"/"+created[2].Name+"\x00", currentRV), expectRemaining: &two},
		{name: "test List with continue from third pod, negative resource version gives consistent read", prefix: "/pods/",
			pred:        everything(0, encodeContinue(t, created[2].Namespace+"/"+created[2].Name+"\x00", -1)),
			expectedOut: []example.Pod{*created[3], *created[4]}},
	}
	for _, tt := range tcs {
		t.Run(tt.name, func(t *testing.T) {
			out := &example.PodList{}
			err := store.GetList(ctx, tt.prefix, storage.ListOptions{
				ResourceVersion: tt.rv, ResourceVersionMatch: tt.rvMatch, Predicate: tt.pred, Recursive: true}, out)
			if tt.expectTooLarge {
				if !storage.IsTooLargeResourceVersion(err) {
					t.Fatalf("expecting resource version too high error, but got: %v (list at %s, %d items)", err, out.ResourceVersion, len(out.Items))
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, fmt.Sprint(currentRV), out.ResourceVersion)
			if tt.expectContinue != "" {
				storagetesting.ExpectContinueMatches(t, tt.expectContinue, out.Continue)
			} else if out.Continue != "" {
				t.Errorf("unexpected continue token %q", out.Continue)
			}
			if tt.expectRemaining != nil {
				require.NotNil(t, out.RemainingItemCount)
				require.Equal(t, *tt.expectRemaining, *out.RemainingItemCount)
			}
			require.Equal(t, len(tt.expectedOut), len(out.Items))
			for i := range tt.expectedOut {
				require.Equal(t, tt.expectedOut[i].Namespace+"/"+tt.expectedOut[i].Name, out.Items[i].Namespace+"/"+out.Items[i].Name)
				require.Equal(t, tt.expectedOut[i].ResourceVersion, out.Items[i].ResourceVersion)
			}
		})
	}
}

// TestConsistentListAtCurrentRevision is RunTestConsistentList (no cache) with the real
// revisions: every list, consistent or at RV 0, answers at the revision of the latest
// write, and a later write moves it.
func TestConsistentListAtCurrentRevision(t *testing.T) {
	ctx, store := testSetup(t)
	inPod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "foo"}}
	require.NoError(t, store.Create(ctx, podKey(inPod), inPod, &example.Pod{}, 0))
	increaseRV := increaseRVFunc(store.client.Client)
	consistentRV := increaseRV(ctx, t)
	for _, tc := range []struct{ name, requestRV, continueToken string }{
		{name: "Non-consistent list before consistent read", requestRV: "0"},
		{name: "LIST without RV returns consistent RV", requestRV: ""},
		{name: "List with negative continue RV returns consistent RV", continueToken: encodeContinue(t, "/pods/a", -1)},
		{name: "Non-consistent request after consistent read", requestRV: "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &example.PodList{}
			opts := storage.ListOptions{Recursive: true, ResourceVersion: tc.requestRV, Predicate: storage.SelectionPredicate{
				Label: labels.Everything(), Field: fields.Everything(), Continue: tc.continueToken}}
			require.NoError(t, store.GetList(ctx, "/pods/empty", opts, out))
			require.Equal(t, fmt.Sprint(consistentRV), out.ResourceVersion)
		})
		consistentRV = increaseRV(ctx, t)
	}
}
