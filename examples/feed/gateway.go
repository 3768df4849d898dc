package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/instrument/tracehttp"
)

// gatewayTags tags a request with what identifies its caller — never the API
// key itself.
func gatewayTags(r *http.Request, set func(string, any)) {
	if c := r.Header.Get("X-Client"); c != "" {
		set("client", c)
	}
	if k := r.Header.Get("X-Api-Key"); k != "" {
		set("api_key", tracehttp.KeyFingerprint(k))
	}
	if u := r.URL.Query().Get("user"); u != "" {
		set("user", u)
	}
}

func gatewayHandler(in *metrics.Instrumentation, feedConn *grpc.ClientConn, profileURL string) http.Handler {
	client := &http.Client{Transport: &tracehttp.Transport{In: in}, Timeout: 10 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /feed", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		user := r.URL.Query().Get("user")
		if err := authenticate(ctx, r.Header.Get("X-Api-Key")); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if profileURL != "" {
			if err := getProfile(ctx, client, profileURL, user); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "x-client", r.Header.Get("X-Client"))
		var posts structpb.ListValue
		if err := feedConn.Invoke(ctx, methodGetFeed, wrapperspb.String(user), &posts); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(posts.AsSlice())
	})
	mux.HandleFunc("POST /post", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if err := authenticate(ctx, r.Header.Get("X-Api-Key")); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		req, err := structpb.NewStruct(map[string]any{"user": r.URL.Query().Get("user"), "post": r.URL.Query().Get("text")})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "x-client", r.Header.Get("X-Client"))
		if err := feedConn.Invoke(ctx, methodPublish, req, &emptypb.Empty{}); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	return tracehttp.Middleware(in, mux, tracehttp.Options{
		Operation: func(r *http.Request) string { return r.Method + " " + r.URL.Path },
		Tags:      gatewayTags,
	})
}

// authenticate is the gateway's key check: an internal span.
func authenticate(ctx context.Context, key string) (err error) {
	timer, _ := metrics.StartWithTracing(ctx, "authenticate")
	defer func() { timer.StopErr(err) }()
	if key == "" {
		return fmt.Errorf("missing X-Api-Key")
	}
	return nil
}

func getProfile(ctx context.Context, c *http.Client, base, user string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/profile?user="+url.QueryEscape(user), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	return nil
}
