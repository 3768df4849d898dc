package feed

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig bounds a workload.
type LoadConfig struct {
	Requests    int // total requests (default 500)
	Concurrency int // requests in flight (default 8): contention on the slow shard
	Users       int // distinct users (default 50)
	PostEvery   int // every n-th request is a POST /post (default 5; 0 uses the default, -1 none)
}

// isPost reports whether request i is a POST /post (every PostEvery-th).
func (c LoadConfig) isPost(i int) bool { return c.PostEvery > 0 && i%c.PostEvery == c.PostEvery-1 }

// Clients are the X-Client values of the load, in turn.
var Clients = []string{"ios", "android", "web", "partner-api"}

// LoadResult counts what Load sent.
type LoadResult struct {
	Feeds, Posts, Failed int64
}

// Load sends cfg.Requests requests to the gateway at base with
// cfg.Concurrency workers, and returns when all are answered or ctx is done.
// Request i is deterministic: user, client, API key and kind follow from i.
func Load(ctx context.Context, base string, cfg LoadConfig) (LoadResult, error) {
	if cfg.Requests == 0 {
		cfg.Requests = 500
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Users <= 0 {
		cfg.Users = 50
	}
	if cfg.PostEvery == 0 {
		cfg.PostEvery = 5
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var res LoadResult
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := send(ctx, client, base, cfg, i); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	for i := 0; i < cfg.Requests && ctx.Err() == nil; i++ {
		select {
		case next <- i:
			if cfg.isPost(i) {
				res.Posts++
			} else {
				res.Feeds++
			}
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	res.Failed = failed.Load()
	if firstErr != nil {
		return res, fmt.Errorf("%d of %d requests failed, first: %w", res.Failed, res.Feeds+res.Posts, firstErr)
	}
	return res, ctx.Err()
}

func send(ctx context.Context, c *http.Client, base string, cfg LoadConfig, i int) error {
	user := fmt.Sprintf("user-%d", i%cfg.Users)
	client := Clients[i%len(Clients)]
	method, u := http.MethodGet, base+"/feed?user="+user
	if cfg.isPost(i) {
		method, u = http.MethodPost, base+"/post?user="+user+"&text="+url.QueryEscape(fmt.Sprintf("post %06d", i))
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Client", client)
	req.Header.Set("X-Api-Key", fmt.Sprintf("secret-%s-%d", client, i%7))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, u, resp.Status)
	}
	return nil
}
