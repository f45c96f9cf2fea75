package robustness

// etcd's robustness model counts revisions 1, 2, 3...: a write that changes the store makes
// revision R+1 (model/deterministic.go), NewReplay indexes states by revision, and the watch
// validators look up "the state before an event" at event.Revision-1. etcd-fdb's revisions
// are the store's commit versions: unique and increasing in commit order, but sparse (about
// 1,000,000 per second). Two adaptations, both applied to the recorded history after the
// run and before upstream's validation, which then runs unchanged:
//
//  1. denseHistory renames every etcd-fdb revision to its rank among the revisions at which
//     the store changed (the first write becomes 2, as in etcd). The renaming preserves
//     order and equality of write revisions, so every comparison the model and the
//     validators make between revisions means the same thing before and after.
//
//  2. persistedRequests rebuilds what upstream reads from etcd's WAL (the requests the
//     server applied, in order), which etcd-fdb does not have: for each revision, the
//     request whose response carries it, or, when no client saw a response (the request
//     timed out or the server was killed), the request whose effect matches the events the
//     full-keyspace watcher received at that revision.

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"go.etcd.io/etcd/tests/v3/robustness/model"
	"go.etcd.io/etcd/tests/v3/robustness/report"
)

// revisionSpace is the sorted set of etcd-fdb revisions at which the store changed, as
// observed by the clients: response headers, mod revisions of returned keys, and watch
// events. Revision 1 is the empty store's (etcd-fdb, like etcd, reports it before any write).
type revisionSpace struct {
	writes []int64
}

func newRevisionSpace(reports []report.ClientReport) revisionSpace {
	set := map[int64]struct{}{}
	add := func(rev int64) {
		if rev > 1 {
			set[rev] = struct{}{}
		}
	}
	addKVs := func(kvs []model.KeyValue) {
		for _, kv := range kvs {
			add(kv.ModRevision)
		}
	}
	for _, r := range reports {
		for _, op := range r.KeyValue {
			resp := op.Output.(model.MaybeEtcdResponse)
			if resp.Error != "" || resp.ClientError != "" {
				continue
			}
			add(resp.Revision)
			if resp.Range != nil {
				addKVs(resp.Range.KVs)
			}
			if resp.Txn != nil {
				for _, result := range resp.Txn.Results {
					addKVs(result.KVs)
				}
			}
		}
		for _, watch := range r.Watch {
			for _, resp := range watch.Responses {
				for _, event := range resp.Events {
					add(event.Revision)
					if event.PrevValue != nil {
						add(event.PrevValue.ModRevision)
					}
				}
			}
		}
	}
	writes := slices.Collect(maps.Keys(set))
	slices.Sort(writes)
	return revisionSpace{writes: writes}
}

// atOrBefore maps a point in etcd-fdb's revision space ("the store as of revision x": a
// response header, a mod revision, a compaction or range revision, a progress notification)
// to the dense revision of the newest write at or before it. 0 and negative values (no
// revision, "latest", the model's compaction placeholder -1) are kept.
func (s revisionSpace) atOrBefore(x int64) int64 {
	if x <= 0 {
		return x
	}
	return int64(sort.Search(len(s.writes), func(i int) bool { return s.writes[i] > x })) + 1
}

// from maps the start revision of a watch ("events at x and after") to the dense revision of
// the first write at or after x.
func (s revisionSpace) from(x int64) int64 {
	if x <= 0 {
		return x
	}
	return int64(sort.Search(len(s.writes), func(i int) bool { return s.writes[i] >= x })) + 2
}

func (s revisionSpace) isWrite(x int64) bool {
	_, found := slices.BinarySearch(s.writes, x)
	return found
}

// original returns the etcd-fdb revision of a dense write revision (2, 3, ...).
func (s revisionSpace) original(dense int64) int64 {
	if dense < 2 || dense-2 >= int64(len(s.writes)) {
		return dense
	}
	return s.writes[dense-2]
}

// lastDense is the dense revision of the newest write.
func (s revisionSpace) lastDense() int64 { return int64(len(s.writes)) + 1 }

// denseHistory returns a copy of reports with every revision renamed (revisionSpace). A
// revision given by a client in a request (a range or compaction revision, a compared mod
// revision) must be one of the observed write revisions (or 0 or 1): between two writes
// the dense numbering has no point, so such a request could not be renamed exactly. They
// are returned as errors; the traffic used here never sends one (see traffic_test.go).
func denseHistory(reports []report.ClientReport, space revisionSpace) ([]report.ClientReport, []error) {
	var errs []error
	input := func(what string, x int64) int64 {
		if x > 1 && !space.isWrite(x) {
			errs = append(errs, fmt.Errorf("%s %d is not a revision at which the store changed: it has no dense equivalent", what, x))
		}
		return space.atOrBefore(x)
	}
	out := make([]report.ClientReport, 0, len(reports))
	for _, r := range reports {
		dense := report.ClientReport{ClientID: r.ClientID}
		for _, op := range r.KeyValue {
			op.Input = denseRequest(op.Input.(model.EtcdRequest), input)
			op.Output = denseResponse(op.Output.(model.MaybeEtcdResponse), space)
			dense.KeyValue = append(dense.KeyValue, op)
		}
		for _, watch := range r.Watch {
			dense.Watch = append(dense.Watch, denseWatch(watch, space))
		}
		out = append(out, dense)
	}
	return out, errs
}

func denseRequest(req model.EtcdRequest, input func(string, int64) int64) model.EtcdRequest {
	switch {
	case req.Range != nil:
		rangeRequest := *req.Range
		rangeRequest.Revision = input("range revision", rangeRequest.Revision)
		req.Range = &rangeRequest
	case req.Txn != nil:
		txn := *req.Txn
		txn.Conditions = slices.Clone(txn.Conditions)
		for i := range txn.Conditions {
			txn.Conditions[i].ExpectedRevision = input("compared mod revision", txn.Conditions[i].ExpectedRevision)
		}
		req.Txn = &txn
	case req.Compact != nil:
		compact := *req.Compact
		compact.Revision = input("compaction revision", compact.Revision)
		req.Compact = &compact
	}
	return req
}

func denseKVs(kvs []model.KeyValue, space revisionSpace) []model.KeyValue {
	if kvs == nil {
		return nil
	}
	out := make([]model.KeyValue, len(kvs))
	for i, kv := range kvs {
		kv.ModRevision = space.atOrBefore(kv.ModRevision)
		out[i] = kv
	}
	return out
}

func denseResponse(resp model.MaybeEtcdResponse, space revisionSpace) model.MaybeEtcdResponse {
	resp.Revision = space.atOrBefore(resp.Revision)
	resp.PersistedRevision = space.atOrBefore(resp.PersistedRevision)
	if resp.Range != nil {
		rangeResponse := *resp.Range
		rangeResponse.KVs = denseKVs(rangeResponse.KVs, space)
		resp.Range = &rangeResponse
	}
	if resp.Txn != nil {
		txn := *resp.Txn
		txn.Results = slices.Clone(txn.Results)
		for i := range txn.Results {
			txn.Results[i].KVs = denseKVs(txn.Results[i].KVs, space)
		}
		resp.Txn = &txn
	}
	return resp
}

func denseWatch(watch model.WatchOperation, space revisionSpace) model.WatchOperation {
	watch.Request.Revision = space.from(watch.Request.Revision)
	responses := make([]model.WatchResponse, len(watch.Responses))
	for i, resp := range watch.Responses {
		resp.Revision = space.atOrBefore(resp.Revision)
		events := make([]model.WatchEvent, len(resp.Events))
		for j, event := range resp.Events {
			event.Revision = space.atOrBefore(event.Revision)
			if event.PrevValue != nil {
				prev := *event.PrevValue
				prev.ModRevision = space.atOrBefore(prev.ModRevision)
				event.PrevValue = &prev
			}
			events[j] = event
		}
		if resp.Events == nil {
			events = nil
		}
		resp.Events = events
		responses[i] = resp
	}
	watch.Responses = responses
	return watch
}

// candidate is a client write that may have made a revision.
type candidate struct {
	request  model.EtcdRequest
	response model.MaybeEtcdResponse
	used     bool
}

// fullWatchEvents returns, per dense revision, the events that watchers of the whole
// keyspace (key "" with prefix) received, keyed by key, and the revisions those watchers
// covered (from their start to the last event or progress notification they received).
// Two watchers reporting different events for one key and revision is an error.
func fullWatchEvents(reports []report.ClientReport) (map[int64]map[string]model.Event, func(int64) bool, error) {
	events := map[int64]map[string]model.Event{}
	type interval struct{ first, last int64 }
	var covered []interval
	for _, r := range reports {
		for _, watch := range r.Watch {
			if watch.Request.Key != "" || !watch.Request.WithPrefix {
				continue
			}
			first := watch.Request.Revision
			var last int64
			for _, resp := range watch.Responses {
				if resp.IsProgressNotify && resp.Revision > last {
					last = resp.Revision
				}
				for _, event := range resp.Events {
					if first == 0 {
						first = event.Revision
					}
					last = max(last, event.Revision)
					byKey := events[event.Revision]
					if byKey == nil {
						byKey = map[string]model.Event{}
						events[event.Revision] = byKey
					}
					if seen, ok := byKey[event.Key]; ok && seen != event.Event {
						return nil, nil, fmt.Errorf("two watchers disagree on key %q at revision %d: %+v and %+v",
							event.Key, event.Revision, seen, event.Event)
					}
					byKey[event.Key] = event.Event
				}
			}
			if first != 0 && last >= first {
				covered = append(covered, interval{first, last})
			}
		}
	}
	isCovered := func(rev int64) bool {
		for _, c := range covered {
			if c.first <= rev && rev <= c.last {
				return true
			}
		}
		return false
	}
	return events, isCovered, nil
}

// changes returns what going from state before to state after made, as watch events.
func changes(before, after model.EtcdState) map[string]model.Event {
	out := map[string]model.Event{}
	for key, value := range after.KeyValues {
		if value.ModRevision == after.Revision && after.Revision != before.Revision {
			out[key] = model.Event{Type: model.PutOperation, Key: key, Value: value.Value}
		}
	}
	for key := range before.KeyValues {
		if _, ok := after.KeyValues[key]; !ok {
			out[key] = model.Event{Type: model.DeleteOperation, Key: key}
		}
	}
	return out
}

// persistedRequests rebuilds, from a dense history, the requests etcd-fdb applied, in order:
// what upstream reads from etcd's WAL (report.PersistedRequestsCluster). Lease grants come
// first (they make no revision, ids are unique, and a lease is used only after its grant
// returned). Then, for every dense revision 2..last, the request that made it, found by
// applying candidates with the model to the state of the previous revision, in this order
// of preference:
//
//  1. a write answered with this revision whose response the model reproduces and whose
//     changes are the events the full-keyspace watcher received at this revision;
//  2. the same without the events, when no full-keyspace watcher covered the revision;
//  3. a write whose outcome its client does not know (an error or a timeout) whose changes
//     are those events;
//  4. a write answered with this revision that makes it (the validation then reports how
//     its response or the watcher's events differ from the model's).
//
// Writes answered with a revision that made none (a delete of a missing key, a lease revoke
// whose keys were already gone, a failed compare) are applied after the one that made it:
// they happened between it and the next revision.
//
// A revision that no client request explains is an error: either the watcher reported
// events that nobody asked for, or a response carried a revision at which nothing was
// written, or (history incomplete) no client saw a response and no watcher covered it.
func persistedRequests(reports []report.ClientReport, space revisionSpace) ([]model.EtcdRequest, error) {
	byRevision := map[int64][]*candidate{}
	var unknown []*candidate
	var persisted []model.EtcdRequest
	state, err := model.NewReplay(nil).StateForRevision(1) // the empty store
	if err != nil {
		return nil, err
	}
	for _, r := range reports {
		for _, op := range r.KeyValue {
			request := op.Input.(model.EtcdRequest)
			response := op.Output.(model.MaybeEtcdResponse)
			switch {
			case request.Type == model.LeaseGrant && response.Error == "":
				persisted = append(persisted, request)
				state, _ = state.Step(request)
			case request.Type != model.Txn && request.Type != model.LeaseRevoke:
			case request.IsRead():
			case response.Error != "":
				unknown = append(unknown, &candidate{request: request, response: response})
			case response.ClientError == "":
				byRevision[response.Revision] = append(byRevision[response.Revision], &candidate{request: request, response: response})
			}
		}
	}
	events, covered, err := fullWatchEvents(reports)
	if err != nil {
		return nil, err
	}
	for rev := int64(2); rev <= space.lastDense(); rev++ {
		want, haveEvents := events[rev]
		if !haveEvents && covered(rev) {
			want, haveEvents = map[string]model.Event{}, true // the watcher saw nothing here
		}
		find := func(candidates []*candidate, response, changed bool) (*candidate, model.EtcdState) {
			for _, c := range candidates {
				if c.used {
					continue
				}
				after, modelResponse := state.Step(c.request)
				if after.Revision != rev ||
					(response && !model.Match(c.response, modelResponse)) ||
					(changed && !maps.Equal(changes(state, after), want)) {
					continue
				}
				return c, after
			}
			return nil, model.EtcdState{}
		}
		producer, next := find(byRevision[rev], true, haveEvents)
		if producer == nil && haveEvents {
			producer, next = find(unknown, false, true)
		}
		if producer == nil {
			producer, next = find(byRevision[rev], false, false)
		}
		if producer == nil {
			switch {
			case !haveEvents:
				return nil, fmt.Errorf("history incomplete: revision %d (etcd-fdb %d) was observed, but no client got a response at it and no full-keyspace watcher covered it",
					rev, space.original(rev))
			case len(want) == 0:
				return nil, fmt.Errorf("revision %d (etcd-fdb %d) was observed, no client got a response at it, and the full-keyspace watcher, which covered it, received no event at it",
					rev, space.original(rev))
			default:
				return nil, fmt.Errorf("revision %d (etcd-fdb %d): the watcher received events %v that no client request produces from the state of revision %d",
					rev, space.original(rev), slices.Collect(maps.Values(want)), rev-1)
			}
		}
		producer.used = true
		persisted = append(persisted, producer.request)
		state = next
		for _, c := range byRevision[rev] {
			if after, _ := state.Step(c.request); !c.used && after.Revision == rev {
				c.used = true
				persisted = append(persisted, c.request)
				state = after
			}
		}
	}
	return persisted, nil
}
