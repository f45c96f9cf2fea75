package k8s

// The glue that k8s.io/apiserver/pkg/storage/etcd3's own tests keep in their _test.go files
// (testSetup, compactStorage, increaseRVFunc, storeWithPrefixTransformer, ...), written again
// for a store built from the package's exported API on a client of an etcd-fdb process.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/grpclog"

	"k8s.io/apimachinery/pkg/api/apitesting"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	etcdfeature "k8s.io/apiserver/pkg/storage/feature"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/utils/clock"
)

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

const defaultTestPrefix = "test!"

func init() {
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	utilruntime.Must(example.AddToScheme(scheme))
	utilruntime.Must(examplev1.AddToScheme(scheme))

	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
}

func newPod() runtime.Object     { return &example.Pod{} }
func newPodList() runtime.Object { return &example.PodList{} }

// etcd3Store is what etcd3.New returns (its type, *etcd3.store, is not exported).
type etcd3Store interface {
	storage.Interface
	Close()
}

// swappableTransformer stands for the store's transformer field that the upstream tests
// assign directly (store.transformer, store.watcher.transformer): the store and its watcher
// both hold this wrapper, and the tests swap what it delegates to.
type swappableTransformer struct {
	mu  sync.RWMutex
	cur value.Transformer
}

func (s *swappableTransformer) get() value.Transformer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur
}

func (s *swappableTransformer) set(t value.Transformer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = t
}

func (s *swappableTransformer) TransformFromStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, bool, error) {
	return s.get().TransformFromStorage(ctx, data, dataCtx)
}

func (s *swappableTransformer) TransformToStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, error) {
	return s.get().TransformToStorage(ctx, data, dataCtx)
}

// testStore is one etcd3 store on one etcd-fdb process, with the handles the upstream tests
// reach through the store's private fields.
type testStore struct {
	etcd3Store
	client      *kubernetes.Client
	codec       runtime.Codec
	transformer *swappableTransformer
	server      *etcdFDB
}

// UpdatePrefixTransformer implements storagetesting.InterfaceWithPrefixTransformer as
// upstream's storeWithPrefixTransformer does.
func (s *testStore) UpdatePrefixTransformer(modifier storagetesting.PrefixTransformerModifier) func() {
	original := s.transformer.get()
	prefixTransformer := *original.(*storagetesting.PrefixTransformer)
	s.transformer.set(modifier(&prefixTransformer))
	return func() { s.transformer.set(original) }
}

// UpdateTransformer implements storagetesting.InterfaceWithTransformerOverride as
// upstream's storeWithTransformerOverride does.
func (s *testStore) UpdateTransformer(modifier storagetesting.TransformerModifier) func() {
	original := s.transformer.get()
	s.transformer.set(modifier(original))
	return func() { s.transformer.set(original) }
}

// prefixTransformer is the PrefixTransformer the store was built with (upstream reads it as
// store.transformer.(*storagetesting.PrefixTransformer)).
func (s *testStore) prefixTransformer() *storagetesting.PrefixTransformer {
	return s.transformer.get().(*storagetesting.PrefixTransformer)
}

// kvRecorder is the client's KV, wrapped as upstream's testserver.RunEtcd wraps it.
func (s *testStore) kvRecorder() *storagetesting.KVRecorder {
	return s.client.KV.(*storagetesting.KVRecorder)
}

func (s *testStore) kubernetesRecorder() *storagetesting.KubernetesRecorder {
	return s.client.Kubernetes.(*storagetesting.KubernetesRecorder)
}

// getKeys is upstream's store.getKeys: the keys under the resource prefix.
func (s *testStore) getKeys(prefix string) storage.KeysFunc {
	return func(ctx context.Context) ([]string, error) {
		resp, err := s.client.KV.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			keys = append(keys, string(kv.Key))
		}
		return keys, nil
	}
}

type setupOptions struct {
	server         serverConfig
	codec          runtime.Codec
	newFunc        func() runtime.Object
	newListFunc    func() runtime.Object
	prefix         string
	resourcePrefix string
	groupResource  schema.GroupResource
	transformer    value.Transformer
	leaseConfig    etcd3.LeaseManagerConfig
}

type setupOption func(*setupOptions)

func withProgressNotifyInterval(d time.Duration) setupOption {
	return func(o *setupOptions) { o.server.progressNotifyInterval = d }
}

func withPrefix(prefix string) setupOption {
	return func(o *setupOptions) { o.prefix = prefix }
}

func withResourcePrefix(prefix string) setupOption {
	return func(o *setupOptions) { o.resourcePrefix = prefix }
}

func withTransformer(transformer value.Transformer) setupOption {
	return func(o *setupOptions) { o.transformer = transformer }
}

func withCodec(codec runtime.Codec) setupOption {
	return func(o *setupOptions) { o.codec = codec }
}

func newTestLeaseManagerConfig() etcd3.LeaseManagerConfig {
	cfg := etcd3.NewDefaultLeaseManagerConfig()
	// As upstream: the default reuse duration exceeds wait.ForeverTestTimeout.
	cfg.ReuseDurationSeconds = 1
	return cfg
}

func newTestTransformer() value.Transformer {
	return storagetesting.NewPrefixTransformer([]byte(defaultTestPrefix), false)
}

func withDefaults(o *setupOptions) {
	o.codec = apitesting.TestCodec(codecs, examplev1.SchemeGroupVersion)
	o.newFunc = newPod
	o.newListFunc = newPodList
	o.prefix = ""
	o.resourcePrefix = "/pods/"
	o.groupResource = schema.GroupResource{Resource: "pods"}
	o.transformer = newTestTransformer()
	o.leaseConfig = newTestLeaseManagerConfig()
}

// newClient is upstream's testserver.RunEtcd after the server is up: a kubernetes.Client
// whose KV and Kubernetes interfaces record the reads.
func newClient(t testing.TB, endpoint string) *kubernetes.Client {
	client, err := kubernetes.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 10 * time.Second,
		Logger:      zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)).Named("etcd-client"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	kubernetesRecorder := storagetesting.NewKubernetesRecorder(client.Kubernetes)
	client.KV = storagetesting.NewKVRecorder(client.KV, kubernetesRecorder)
	client.Kubernetes = kubernetesRecorder
	return client
}

// testSetup is upstream's testSetup: a fresh etcd-fdb, a client, a compactor with no
// compaction loop (it watches the compaction key when ListFromCacheSnapshot is enabled), and
// an etcd3 store.
func testSetup(t testing.TB, opts ...setupOption) (context.Context, *testStore) {
	o := setupOptions{}
	for _, opt := range append([]setupOption{withDefaults}, opts...) {
		opt(&o)
	}
	server := startEtcdFDB(t, o.server)
	// Every call the test makes with this context fails at once if the server crashes,
	// rather than waiting for a connection forever; the crash itself is reported by the
	// server's cleanup (exit status and log tail).
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	go func() {
		select {
		case <-server.died():
			cancel(fmt.Errorf("etcd-fdb exited during the test (see its exit status below)"))
		case <-ctx.Done():
		}
	}()
	client := newClient(t, server.endpoint)
	versioner := storage.APIObjectVersioner{}
	compactor := etcd3.NewCompactor(client.Client, 0, clock.RealClock{}, nil)
	t.Cleanup(compactor.Stop)
	transformer := &swappableTransformer{cur: o.transformer}
	s, err := etcd3.New(
		client,
		compactor,
		o.codec,
		o.newFunc,
		o.newListFunc,
		o.prefix,
		o.resourcePrefix,
		o.groupResource,
		transformer,
		o.leaseConfig,
		etcd3.NewDefaultDecoder(o.codec, versioner),
		versioner,
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return ctx, &testStore{
		etcd3Store:  s,
		client:      client,
		codec:       o.codec,
		transformer: transformer,
		server:      server,
	}
}

// checkStorageInvariants is upstream's: what is stored is the transformer's prefix plus the
// encoded object, without resourceVersion or selfLink.
func checkStorageInvariants(etcdClient *clientv3.Client, codec runtime.Codec) storagetesting.KeyValidation {
	return func(ctx context.Context, t *testing.T, key string) {
		getResp, err := etcdClient.KV.Get(ctx, key)
		if err != nil {
			t.Fatalf("etcdClient.KV.Get failed: %v", err)
		}
		if len(getResp.Kvs) == 0 {
			t.Fatalf("expecting non empty result on key: %s", key)
		}
		decoded, err := runtime.Decode(codec, getResp.Kvs[0].Value[len(defaultTestPrefix):])
		if err != nil {
			t.Fatalf("expecting successful decode of object from %v\n%v", err, string(getResp.Kvs[0].Value))
		}
		obj := decoded.(*example.Pod)
		if obj.ResourceVersion != "" {
			t.Errorf("stored object should have empty resource version")
		}
		if obj.SelfLink != "" {
			t.Errorf("stored output should have empty selfLink")
		}
	}
}

// compactStorage is upstream's: compact through etcd3.Compact (which records the revision
// in compact_rev_key, as kube-apiserver's compactor does) and, with ListFromCacheSnapshot,
// wait until the store has seen it.
func compactStorage(s *testStore) storagetesting.Compaction {
	return func(ctx context.Context, t *testing.T, resourceVersion string) {
		versioner := storage.APIObjectVersioner{}
		rv, err := versioner.ParseResourceVersion(resourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		var currentVersion int64
		currentVersion, _, _, err = etcd3.Compact(ctx, s.client.Client, currentVersion, int64(rv))
		if err != nil {
			_, _, _, err = etcd3.Compact(ctx, s.client.Client, currentVersion, int64(rv))
		}
		if err != nil {
			t.Fatal(err)
		}
		if utilfeature.DefaultFeatureGate.Enabled(features.ListFromCacheSnapshot) {
			deadline := time.After(wait30s)
			for s.CompactRevision() != int64(rv) {
				select {
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				case <-deadline:
					t.Fatalf("the store did not observe compaction at %d (it has %d)", rv, s.CompactRevision())
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
}

const wait30s = 30 * time.Second

// increaseRVFunc is upstream's: an unrelated write, returning its revision.
func increaseRVFunc(client *clientv3.Client) storagetesting.IncreaseRVFunc {
	return func(ctx context.Context, t *testing.T) int64 {
		resp, err := client.KV.Put(ctx, "increaseRV", "ok")
		if err != nil {
			t.Fatalf("Could not update increaseRV: %v", err)
		}
		return resp.Header.Revision
	}
}

// resetFeatureSupportCheckerDuringTest is upstream's: a fresh global checker, so a
// RangeStream marked unsupported by one test does not carry over to the next.
func resetFeatureSupportCheckerDuringTest(t *testing.T) {
	t.Helper()
	orig := etcdfeature.DefaultFeatureSupportChecker
	etcdfeature.DefaultFeatureSupportChecker = etcdfeature.NewDefaultFeatureSupportChecker()
	t.Cleanup(func() { etcdfeature.DefaultFeatureSupportChecker = orig })
}

// corruptObjectError returns what upstream builds as
// &corruptObjectError{err: fmt.Errorf("bits flipped"), errType: untransformable}: the type
// is not exported, so it is taken from the exported transformer decorator that makes it.
func corruptObjectError(t *testing.T) error {
	t.Helper()
	_, _, err := etcd3.WithCorruptObjErrorHandlingTransformer(failingTransformer{}).
		TransformFromStorage(context.Background(), nil, nil)
	if err == nil {
		t.Fatal("WithCorruptObjErrorHandlingTransformer returned no error")
	}
	return err
}

type failingTransformer struct{}

func (failingTransformer) TransformFromStorage(context.Context, []byte, value.Context) ([]byte, bool, error) {
	return nil, false, errors.New("bits flipped")
}

func (failingTransformer) TransformToStorage(context.Context, []byte, value.Context) ([]byte, error) {
	return nil, errors.New("bits flipped")
}
