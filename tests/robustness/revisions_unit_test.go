package robustness

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.uber.org/zap/zaptest"

	"go.etcd.io/etcd/tests/v3/robustness/model"
	"go.etcd.io/etcd/tests/v3/robustness/report"
	"go.etcd.io/etcd/tests/v3/robustness/validate"
)

func putRequest(key, value string) model.EtcdRequest {
	return model.EtcdRequest{Type: model.Txn, Txn: &model.TxnRequest{OperationsOnSuccess: []model.EtcdOperation{
		{Type: model.PutOperation, Put: model.PutOptions{Key: key, Value: model.ToValueOrHash(value)}},
	}}}
}

func putResponse(rev int64) model.MaybeEtcdResponse {
	return model.MaybeEtcdResponse{EtcdResponse: model.EtcdResponse{
		Txn: &model.TxnResponse{Results: []model.EtcdOperationResult{{}}}, Revision: rev}}
}

func getRequest(key string, rev int64) model.EtcdRequest {
	return model.EtcdRequest{Type: model.Range, Range: &model.RangeRequest{RangeOptions: model.RangeOptions{Start: key}, Revision: rev}}
}

func getResponse(header int64, kvs ...model.KeyValue) model.MaybeEtcdResponse {
	return model.MaybeEtcdResponse{EtcdResponse: model.EtcdResponse{
		Range: &model.RangeResponse{KVs: append([]model.KeyValue{}, kvs...), Count: int64(len(kvs))}, Revision: header}}
}

func keyValue(key, value string, mod, version int64) model.KeyValue {
	return model.KeyValue{Key: key, ValueRevision: model.ValueRevision{Value: model.ToValueOrHash(value), ModRevision: mod, Version: version}}
}

func operation(client int, call int64, req model.EtcdRequest, resp model.MaybeEtcdResponse) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: req, Call: call, Output: resp, Return: call + 1}
}

func putEvent(key, value string, rev int64) model.WatchEvent {
	return model.WatchEvent{PersistedEvent: model.PersistedEvent{
		Event: model.Event{Type: model.PutOperation, Key: key, Value: model.ToValueOrHash(value)}, Revision: rev, IsCreate: true}}
}

// sparseHistory is a small history as etcd-fdb would produce it: writes at revisions 1000,
// 2500, 5000 (a put whose client timed out) and 7000, a stale read, a compaction, and a
// watch of the whole keyspace with a progress notification between two writes.
func sparseHistory() []report.ClientReport {
	failed := putResponse(0)
	failed.Error = "context deadline exceeded"
	failedPut := operation(4, 13, putRequest("b", "2"), failed)
	failedPut.Return = 100 // "infinity", as model.History.Operations gives failed requests
	return []report.ClientReport{
		{ClientID: 1, KeyValue: []porcupine.Operation{
			operation(1, 1, putRequest("start", "true"), putResponse(1000)),
			operation(1, 3, putRequest("a", "1"), putResponse(2500)),
			operation(1, 9, model.EtcdRequest{Type: model.Compact, Compact: &model.CompactRequest{Revision: 2500}},
				model.MaybeEtcdResponse{EtcdResponse: model.EtcdResponse{Compact: &model.CompactResponse{}, Revision: -1}}),
			operation(1, 20, putRequest("tombstone", "true"), putResponse(7000)),
		}},
		{ClientID: 2, KeyValue: []porcupine.Operation{
			operation(2, 5, getRequest("a", 0), getResponse(2500, keyValue("a", "1", 2500, 1))),
			operation(2, 7, getRequest("a", 1000), getResponse(2500)),
			operation(2, 15, getRequest("b", 0), getResponse(5000, keyValue("b", "2", 5000, 1))),
		}},
		{ClientID: 4, KeyValue: []porcupine.Operation{failedPut}},
		{ClientID: 3, Watch: []model.WatchOperation{{
			Request: model.WatchRequest{Key: "", Revision: 2, WithPrefix: true, WithProgressNotify: true},
			Responses: []model.WatchResponse{
				{Events: []model.WatchEvent{putEvent("start", "true", 1000)}, Revision: 1000, Time: 2},
				{Events: []model.WatchEvent{putEvent("a", "1", 2500)}, Revision: 2500, Time: 4},
				{IsProgressNotify: true, Revision: 3000, Time: 6},
				{Events: []model.WatchEvent{putEvent("b", "2", 5000)}, Revision: 5000, Time: 14},
				{Events: []model.WatchEvent{putEvent("tombstone", "true", 7000)}, Revision: 7000, Time: 21},
			},
		}}},
	}
}

func TestRevisionSpace(t *testing.T) {
	space := revisionSpace{writes: []int64{1000, 2500, 7000}}
	for _, c := range []struct{ x, atOrBefore, from int64 }{
		{0, 0, 0}, {-1, -1, -1}, {1, 1, 2}, {999, 1, 2}, {1000, 2, 2}, {1001, 2, 3},
		{2500, 3, 3}, {6999, 3, 4}, {7000, 4, 4}, {9000, 4, 5},
	} {
		if got := space.atOrBefore(c.x); got != c.atOrBefore {
			t.Errorf("atOrBefore(%d) = %d, want %d", c.x, got, c.atOrBefore)
		}
		if got := space.from(c.x); got != c.from {
			t.Errorf("from(%d) = %d, want %d", c.x, got, c.from)
		}
	}
	if space.original(3) != 2500 || space.lastDense() != 4 {
		t.Errorf("original(3) = %d, lastDense() = %d", space.original(3), space.lastDense())
	}
}

// A sparse history made dense is the history etcd would have produced, and upstream's
// validation accepts it; the put whose client timed out is found applied from the watch.
func TestDenseHistoryValidates(t *testing.T) {
	reports := sparseHistory()
	space := newRevisionSpace(reports)
	if want := []int64{1000, 2500, 5000, 7000}; !reflect.DeepEqual(space.writes, want) {
		t.Fatalf("write revisions %v, want %v", space.writes, want)
	}
	dense, errs := denseHistory(reports, space)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if got := dense[1].KeyValue[1].Input.(model.EtcdRequest).Range.Revision; got != 2 {
		t.Errorf("stale read at revision %d, want 2", got)
	}
	if got := dense[0].KeyValue[2].Input.(model.EtcdRequest).Compact.Revision; got != 3 {
		t.Errorf("compaction at revision %d, want 3", got)
	}
	if got := dense[3].Watch[0].Responses[2].Revision; got != 3 {
		t.Errorf("progress notification at revision %d, want 3", got)
	}
	persisted, err := persistedRequests(dense, space)
	if err != nil {
		t.Fatal(err)
	}
	want := []model.EtcdRequest{putRequest("start", "true"), putRequest("a", "1"), putRequest("b", "2"), putRequest("tombstone", "true")}
	if !reflect.DeepEqual(persisted, want) {
		t.Fatalf("persisted requests %+v, want %+v", persisted, want)
	}
	validate.ValidateAndReturnVisualize(t, zaptest.NewLogger(t), validate.Config{ExpectRevisionUnique: true}, dense, persisted, time.Minute)
}

// What cannot be made dense, or explained, is reported rather than guessed.
func TestDenseHistoryErrors(t *testing.T) {
	reports := sparseHistory()
	reports[0].KeyValue[2].Input = model.EtcdRequest{Type: model.Compact, Compact: &model.CompactRequest{Revision: 2600}}
	space := newRevisionSpace(reports)
	if _, errs := denseHistory(reports, space); len(errs) != 1 || !strings.Contains(errs[0].Error(), "compaction revision 2600") {
		t.Errorf("compaction between two writes: errors %v", errs)
	}

	reports = sparseHistory()
	reports[3].Watch[0].Responses[3].Events[0].Value = model.ToValueOrHash("3") // nobody wrote b=3
	space = newRevisionSpace(reports)
	dense, _ := denseHistory(reports, space)
	if _, err := persistedRequests(dense, space); err == nil || !strings.Contains(err.Error(), "no client request produces") {
		t.Errorf("event nobody asked for: %v", err)
	}

	reports = sparseHistory()
	reports[3].Watch = nil // without the watch, nothing tells whether the timed-out put happened
	space = newRevisionSpace(reports)
	dense, _ = denseHistory(reports, space)
	if _, err := persistedRequests(dense, space); err == nil || !strings.Contains(err.Error(), "history incomplete") {
		t.Errorf("unexplained revision without a watch: %v", err)
	}
}
