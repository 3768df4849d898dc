package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/instrument/tracehttp"
)

// shard is one simulated storage shard: at most cap(slots) requests are
// served at a time; the others wait for a slot (contention).
type shard struct {
	name            string
	readOp, writeOp string
	slots           chan struct{}
	latency         time.Duration
	mu              sync.Mutex
	posts           map[string][]string // user → newest posts last
	maxPostsPerUser int
}

type storage struct{ shards []*shard }

func newStorage(cfg Config) *storage {
	st := &storage{}
	for i := 0; i < cfg.Shards; i++ {
		name := "shard-" + strconv.Itoa(i)
		sh := &shard{
			name: name, readOp: "ReadPosts " + name, writeOp: "WritePosts " + name,
			slots: make(chan struct{}, 4), latency: cfg.ShardLatency,
			posts: map[string][]string{}, maxPostsPerUser: 50,
		}
		if i == cfg.SlowShard {
			sh.slots = make(chan struct{}, 1)
			sh.latency = cfg.ShardLatency * time.Duration(cfg.SlowFactor)
		}
		st.shards = append(st.shards, sh)
	}
	return st
}

// shardOf parses /shards/{n}/posts.
func (st *storage) shardOf(path string) *shard {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) != 3 || parts[0] != "shards" || parts[2] != "posts" {
		return nil
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < 0 || n >= len(st.shards) {
		return nil
	}
	return st.shards[n]
}

func (st *storage) handler(in *metrics.Instrumentation) http.Handler {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sh := st.shardOf(r.URL.Path)
		if sh == nil {
			http.NotFound(w, r)
			return
		}
		user := r.URL.Query().Get("user")
		switch r.Method {
		case http.MethodGet:
			posts, err := sh.read(r.Context(), user)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			json.NewEncoder(w).Encode(posts)
		case http.MethodPut:
			if err := sh.write(r.Context(), user, r.URL.Query().Get("post")); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
	return tracehttp.Middleware(in, h, tracehttp.Options{
		Operation: func(r *http.Request) string { return r.Method + " /shards/{n}/posts" },
		Tags: func(r *http.Request, set func(string, any)) {
			if sh := st.shardOf(r.URL.Path); sh != nil {
				set("shard", sh.name)
			}
		},
	})
}

// serve holds a slot of the shard for its service time: with the slow
// shard's single slot, concurrent requests queue.
func (sh *shard) serve(ctx context.Context) error {
	select {
	case sh.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: waiting for a slot: %w", sh.name, ctx.Err())
	}
	defer func() { <-sh.slots }()
	t := time.NewTimer(sh.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (sh *shard) read(ctx context.Context, user string) (posts []string, err error) {
	timer, ctx := metrics.StartWithTracing(ctx, sh.readOp)
	defer func() { timer.StopErr(err) }()
	timer.SetTag("shard", sh.name)
	if err := sh.serve(ctx); err != nil {
		return nil, err
	}
	sh.mu.Lock()
	posts = append(posts, sh.posts[user]...)
	sh.mu.Unlock()
	timer.SetTag("posts", len(posts))
	return posts, nil
}

func (sh *shard) write(ctx context.Context, user, post string) (err error) {
	timer, ctx := metrics.StartWithTracing(ctx, sh.writeOp)
	defer func() { timer.StopErr(err) }()
	timer.SetTag("shard", sh.name)
	if err := sh.serve(ctx); err != nil {
		return err
	}
	sh.mu.Lock()
	p := append(sh.posts[user], post)
	if len(p) > sh.maxPostsPerUser {
		p = p[len(p)-sh.maxPostsPerUser:]
	}
	sh.posts[user] = p
	sh.mu.Unlock()
	return nil
}
