// Package httpserver is the one way tracepipe's binaries serve HTTP beside
// their stages (/metrics, /healthz, the query API): listen first (a taken
// port fails before anything starts), serve on a goroutine the Server
// owns, shut down gracefully and wait for that goroutine. Every server has
// read, write and idle timeouts, so a slow or stuck client cannot hold a
// connection forever.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Options are a Server's timeouts; zero fields take the defaults (for
// /metrics and /healthz).
type Options struct {
	ReadHeaderTimeout time.Duration // default 5 s
	ReadTimeout       time.Duration // default 10 s
	WriteTimeout      time.Duration // default 30 s
	IdleTimeout       time.Duration // default 1 min
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReadHeaderTimeout, 5*time.Second)
	def(&o.ReadTimeout, 10*time.Second)
	def(&o.WriteTimeout, 30*time.Second)
	def(&o.IdleTimeout, time.Minute)
	return o
}

// Server is one HTTP server on one listener.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	served bool
	done   chan error
}

// Listen listens on addr for h; what names the address in errors (a flag
// such as "--metrics-addr"). Nothing is served until Serve.
func Listen(addr, what string, h http.Handler, o Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	o = o.withDefaults()
	return &Server{ln: ln, done: make(chan error, 1), srv: &http.Server{Handler: h, ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, IdleTimeout: o.IdleTimeout}}, nil
}

// Addr is the address listened on (with the port chosen for ":0").
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve starts serving on a goroutine that Shutdown waits for. Call it
// once.
func (s *Server) Serve() {
	s.served = true
	go func() { s.done <- s.srv.Serve(s.ln) }()
}

// Shutdown stops accepting, lets requests in progress finish for up to
// timeout, and returns the server's error, if it failed other than by
// being shut down. After Listen without Serve it only closes the listener.
func (s *Server) Shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	s.ln.Close()
	if !s.served {
		return nil
	}
	if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
