package httpserver

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeAndShutdown(t *testing.T) {
	s, err := Listen("127.0.0.1:0", "--metrics-addr", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	resp, err := http.Get("http://" + s.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Errorf("body %q", b)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := s.Shutdown(time.Second); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if _, err := http.Get("http://" + s.Addr() + "/"); err == nil {
		t.Error("still serving after Shutdown")
	}
}

func TestListenErrorNamesTheFlag(t *testing.T) {
	s, err := Listen("127.0.0.1:0", "--metrics-addr", http.NotFoundHandler(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(time.Second) // never served: closes the listener only
	if _, err := Listen(s.Addr(), "--metrics-addr", http.NotFoundHandler(), Options{}); err == nil || !strings.HasPrefix(err.Error(), "--metrics-addr: ") {
		t.Errorf("second listen on %s: %v", s.Addr(), err)
	}
}
