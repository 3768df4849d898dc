package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	kafka "github.com/segmentio/kafka-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/instrument/propagation"
	"github.com/tracepipe/tracepipe/instrument/tracegrpc"
	"github.com/tracepipe/tracepipe/instrument/tracehttp"
)

// gRPC method names of the feed service.
const (
	methodGetFeed = "/feed.Feed/GetFeed"
	methodPublish = "/feed.Feed/Publish"
)

// shardsOf are the shards holding a user's timeline: three neighbours of the
// user's hash.
func shardsOf(user string, shards int) []int {
	h := fnv.New32a()
	h.Write([]byte(user))
	first := int(h.Sum32() % uint32(shards))
	return []int{first, (first + 1) % shards, (first + 2) % shards}
}

type feedService struct {
	cfg        Config
	in         *metrics.Instrumentation
	storageURL string
	client     *http.Client
	writer     *kafka.Writer
	cache      *cache
}

func newFeedService(cfg Config, in *metrics.Instrumentation, storageURL string, w *kafka.Writer) *feedService {
	return &feedService{
		cfg: cfg, in: in, storageURL: storageURL, writer: w,
		client: &http.Client{Transport: &tracehttp.Transport{In: in}, Timeout: 10 * time.Second},
		cache:  &cache{every: cfg.CacheHitEvery, entries: map[string]*cacheEntry{}},
	}
}

func (fs *feedService) grpcServer() *grpc.Server {
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(tracegrpc.UnaryServerInterceptor(fs.in, tracegrpc.Options{Tags: func(_ context.Context, _ string, md metadata.MD, set func(string, any)) {
			if v := md.Get("x-client"); len(v) > 0 {
				set("client", v[0])
			}
		}})),
		grpc.StreamInterceptor(tracegrpc.StreamServerInterceptor(fs.in, tracegrpc.Options{})),
	)
	srv.RegisterService(&feedServiceDesc, fs)
	return srv
}

// feedServiceDesc describes feed.Feed by hand: its messages are protobuf
// well-known types, so the demo needs no generated code.
var feedServiceDesc = grpc.ServiceDesc{
	ServiceName: "feed.Feed",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "GetFeed", Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			req := new(wrapperspb.StringValue)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, r any) (any, error) {
				return srv.(*feedService).GetFeed(ctx, r.(*wrapperspb.StringValue))
			}
			if ic == nil {
				return h(ctx, req)
			}
			return ic(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: methodGetFeed}, h)
		}},
		{MethodName: "Publish", Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			req := new(structpb.Struct)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, r any) (any, error) {
				return srv.(*feedService).Publish(ctx, r.(*structpb.Struct))
			}
			if ic == nil {
				return h(ctx, req)
			}
			return ic(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: methodPublish}, h)
		}},
	},
}

// GetFeed returns a user's feed: from the cache, else merged from the
// user's three shards (read in parallel) and ranked.
func (fs *feedService) GetFeed(ctx context.Context, req *wrapperspb.StringValue) (*structpb.ListValue, error) {
	user := req.GetValue()
	if user == "" {
		return nil, status.Error(codes.InvalidArgument, "empty user")
	}
	if posts, ok := fs.cache.get(ctx, user); ok {
		return toList(posts), nil
	}
	shards := shardsOf(user, fs.cfg.Shards)
	results := make([][]string, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, n := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = fs.readShard(ctx, n, user)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
	}
	posts := rank(ctx, results)
	fs.cache.set(user, posts)
	return toList(posts), nil
}

func (fs *feedService) readShard(ctx context.Context, n int, user string) ([]string, error) {
	u := fmt.Sprintf("%s/shards/%d/posts?user=%s", fs.storageURL, n, url.QueryEscape(user))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := fs.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("shard %d: %s", n, resp.Status)
	}
	var posts []string
	return posts, json.NewDecoder(resp.Body).Decode(&posts)
}

func rank(ctx context.Context, parts [][]string) []string {
	timer, _ := metrics.StartWithTracing(ctx, "rank")
	defer timer.Stop()
	var all []string
	for _, p := range parts {
		all = append(all, p...)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(all)))
	if len(all) > 20 {
		all = all[:20]
	}
	timer.SetTag("posts", len(all))
	return all
}

func toList(posts []string) *structpb.ListValue {
	l := &structpb.ListValue{Values: make([]*structpb.Value, len(posts))}
	for i, p := range posts {
		l.Values[i] = structpb.NewStringValue(p)
	}
	return l
}

// Publish stores a post on its author's shard and hands the fan-out to
// Kafka: a producer span, the trace context in the record's headers.
func (fs *feedService) Publish(ctx context.Context, req *structpb.Struct) (*emptypb.Empty, error) {
	user := req.GetFields()["user"].GetStringValue()
	post := req.GetFields()["post"].GetStringValue()
	if user == "" || post == "" {
		return nil, status.Error(codes.InvalidArgument, "user and post are required")
	}
	n := shardsOf(user, fs.cfg.Shards)[0]
	u := fmt.Sprintf("%s/shards/%d/posts?user=%s&post=%s", fs.storageURL, n, url.QueryEscape(user), url.QueryEscape(post))
	if err := put(ctx, fs.client, u); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	fs.cache.invalidate(user)
	if err := fs.produce(ctx, user, post); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &emptypb.Empty{}, nil
}

func (fs *feedService) produce(ctx context.Context, user, post string) (err error) {
	timer, ctx := fs.in.Start(ctx, "fanout.Produce", ext.SpanKindProducer,
		opentracing.Tag{Key: "message_bus.destination", Value: fs.cfg.Topic}, opentracing.Tag{Key: "component", Value: "kafka"})
	defer func() { timer.StopErr(err) }()
	msg := kafka.Message{Key: []byte(user), Value: []byte(post)}
	_ = propagation.Inject(fs.in.Tracer(), timer.Span().Context(), opentracing.TextMap, headerCarrier{&msg.Headers})
	return fs.writer.WriteMessages(ctx, msg)
}

func put(ctx context.Context, c *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("PUT %s: %s", strings.SplitN(u, "?", 2)[0], resp.Status)
	}
	return nil
}

// headerCarrier adapts Kafka record headers to opentracing's TextMap.
type headerCarrier struct{ h *[]kafka.Header }

func (c headerCarrier) Set(key, val string) {
	*c.h = append(*c.h, kafka.Header{Key: key, Value: []byte(val)})
}

func (c headerCarrier) ForeachKey(fn func(key, val string) error) error {
	for _, h := range *c.h {
		if err := fn(h.Key, string(h.Value)); err != nil {
			return err
		}
	}
	return nil
}

// dialFeed is the gateway's client of the feed service.
func dialFeed(addr string, in *metrics.Instrumentation) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(tracegrpc.UnaryClientInterceptor(in)),
		grpc.WithStreamInterceptor(tracegrpc.StreamClientInterceptor(in)))
}

// cache is the feed service's in-process timeline cache: every n-th read of
// a user after a fill is a hit (a deterministic hit ratio for the demo).
type cache struct {
	every   int
	mu      sync.Mutex
	entries map[string]*cacheEntry
}

type cacheEntry struct {
	posts []string
	reads int
}

func (c *cache) get(ctx context.Context, user string) ([]string, bool) {
	timer, _ := metrics.StartWithTracing(ctx, "cache.Get")
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[user]
	hit := false
	if e != nil {
		e.reads++
		hit = e.reads%c.every == 0
	}
	timer.SetTag("cache.hit", hit)
	if !hit {
		return nil, false
	}
	return e.posts, true
}

func (c *cache) set(user string, posts []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) > 10000 {
		clear(c.entries)
	}
	c.entries[user] = &cacheEntry{posts: posts}
}

func (c *cache) invalidate(user string) {
	c.mu.Lock()
	delete(c.entries, user)
	c.mu.Unlock()
}
