package ui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/olivere/elastic/v7"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
)

// chromiumPath finds headless Chromium: TRACEPIPE_CHROMIUM, else chromium
// (Debian's package, which `make check` installs) or chromium-browser in
// PATH. Missing, the test is skipped, except under CI=true where it fails.
func chromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("TRACEPIPE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "browser test: no chromium in PATH (apt-get install chromium, or set TRACEPIPE_CHROMIUM)"
	if testenv.CI() {
		t.Fatal("CI=true and " + msg)
	}
	t.Skip(msg)
	return ""
}

// browser starts a headless Chromium for the test and returns a tab's
// context; both close when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1440, 960),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	// The first action starts the browser; it must not run under a timeout
	// (which would stop the browser with it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artefactDir is where screenshots go: TRACEPIPE_UI_SCREENSHOTS, else
// .tmp/ui-screenshots at the repository root (the suite's artefact
// directory, ignored by git).
func artefactDir(t *testing.T) string {
	dir := os.Getenv("TRACEPIPE_UI_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".tmp", "ui-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the page as name.png: the whole page, or only the
// window (1440x960) for the long requests list.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shoot := chromedp.FullScreenshot(100)
	if name == "traces" {
		shoot = chromedp.CaptureScreenshot()
	}
	png, err := chromedp.Run(ctx, shoot)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(artefactDir(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(p)
	t.Logf("screenshot: %s", abs)
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return v
}

func open(t *testing.T, ctx context.Context, url, ready string) {
	t.Helper()
	do(t, ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(ready)))
}

func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	do(t, ctx, chromedp.Click(chromedp.CSS(sel)))
}

const waterfallReady = `body[data-waterfall="ready"]`

// TestBrowser loads every page of a seeded embedded store in headless
// Chromium and checks what a person would check.
func TestBrowser(t *testing.T) {
	browserSuite(t, seed(t), true)
}

// TestBrowserElasticsearch runs the same checks over the real
// Elasticsearch-API engine (TRACEPIPE_ES), seeded with the same data.
func TestBrowserElasticsearch(t *testing.T) {
	url := testenv.Elasticsearch(t)
	prefix := testenv.Name(t, "tpui")
	t.Cleanup(func() {
		c, err := elastic.NewClient(elastic.SetURL(url), elastic.SetSniff(false), elastic.SetHealthcheck(false))
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer c.Stop()
		ctx := context.Background()
		if _, err := c.DeleteIndex(prefix + "-*").Do(ctx); err != nil && !elastic.IsNotFound(err) {
			t.Errorf("cleanup indices: %v", err)
		}
		//lint:ignore SA1019 the store installs legacy (_template) templates, as Jaeger v1 does; the test removes them
		if _, err := c.IndexDeleteTemplate(prefix + "-*").Do(ctx); err != nil && !elastic.IsNotFound(err) {
			t.Errorf("cleanup templates: %v", err)
		}
	})
	s, err := elasticsearch.New(context.Background(), elasticsearch.Config{URLs: []string{url}, IndexPrefix: prefix, Refresh: "wait_for"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	fill(t, s)
	browserSuite(t, s, false)
}

// browserSuite checks every page over s; screenshots saves them.
func browserSuite(t *testing.T, s Reader, screenshots bool) {
	browserCtx := browser(t)
	// sub bounds one subtest, so a missing element fails it alone.
	sub := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(browserCtx, 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	srv := newServer(t, s, "http://jaeger.example:16686")
	shot := func(t *testing.T, ctx context.Context, name string) {
		if screenshots {
			screenshot(t, ctx, name)
		}
	}
	base := srv.URL

	t.Run("home ranks the injected slow operation first", func(t *testing.T) {
		ctx := sub(t)
		open(t, ctx, base+"/?range=1h", "#bottlenecks")
		first := text(t, ctx, "#bottlenecks tbody tr:nth-child(1) td.op")
		if first != slowSvc+" "+slowOp {
			t.Errorf("first row %q, want %q (second %q)", first, slowSvc+" "+slowOp, text(t, ctx, "#bottlenecks tbody tr:nth-child(2) td.op"))
		}
		if rows := eval[int](t, ctx, `document.querySelectorAll("#bottlenecks tbody tr").length`); rows < 5 {
			t.Errorf("%d rows", rows)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll("#bottlenecks svg.spark polyline").length`); n == 0 {
			t.Error("no sparklines")
		}
		shot(t, ctx, "home")
	})

	t.Run("trace page marks exactly the critical-path spans", func(t *testing.T) {
		ctx := sub(t)
		at := demoTrace(11) // shard 4
		var want []string
		seen := map[string]bool{}
		for _, c := range at.Analysis.CriticalPath {
			if id := c.SpanID.String(); !seen[id] {
				seen[id] = true
				want = append(want, id)
			}
		}
		sort.Strings(want)
		open(t, ctx, base+"/trace/"+at.Trace.TraceID.String(), waterfallReady)
		got := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#wf-rows .row.crit")).map(r => r.dataset.spanId)`)
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("critical rows %v, want %v", got, want)
		}
		if b := text(t, ctx, "#bottleneck"); !strings.Contains(b, slowSvc) || !strings.Contains(b, slowOp) {
			t.Errorf("bottleneck callout %q does not name %s %s", b, slowSvc, slowOp)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll("#wf-rows .row").length`); n != len(at.Trace.Spans) {
			t.Errorf("%d rows, want %d", n, len(at.Trace.Spans))
		}
		if href := eval[string](t, ctx, `document.getElementById("jaeger-link").href`); href != "http://jaeger.example:16686/trace/"+at.Trace.TraceID.String() {
			t.Errorf("Jaeger link %q", href)
		}
		// Details on click.
		click(t, ctx, `#wf-rows .row[data-span-id="`+at.Trace.Spans[4].SpanID.String()+`"]`)
		do(t, ctx, chromedp.WaitVisible(chromedp.CSS("#details")))
		if title, tags := text(t, ctx, "#d-title"), text(t, ctx, "#d-tags"); title != slowSvc+" "+slowOp || !strings.Contains(tags, "shard") {
			t.Errorf("details: title %q, tags %q", title, tags)
		}
		shot(t, ctx, "trace")
		// Collapse the api subtree.
		click(t, ctx, "#details-close")
		click(t, ctx, `#wf-rows .row[data-span-id="`+at.Trace.Spans[1].SpanID.String()+`"] .toggle`)
		if n := eval[int](t, ctx, `document.querySelectorAll("#wf-rows .row").length`); n != 3 { // root, api (collapsed), render
			t.Errorf("after collapsing api: %d rows, want 3", n)
		}
	})

	t.Run("a trace with warnings shows them", func(t *testing.T) {
		ctx := sub(t)
		open(t, ctx, base+"/trace/"+demoID(7).String(), "#warnings")
		if w := text(t, ctx, "#warnings"); !strings.Contains(w, "missing-parent") {
			t.Errorf("warnings %q", w)
		}
	})

	t.Run("a 10000-span trace renders only the rows in view", func(t *testing.T) {
		ctx := sub(t)
		open(t, ctx, base+"/trace/"+bigID.String(), waterfallReady)
		if n := eval[int](t, ctx, `document.querySelectorAll("#wf-rows .row").length`); n == 0 || n > 200 {
			t.Errorf("%d rows in the DOM for 10000 spans", n)
		}
		eval[bool](t, ctx, `(() => { const v = document.getElementById("wf-viewport"); v.scrollTop = v.scrollHeight; return true })()`)
		// The scroll handler renders on the next animation frame.
		do(t, ctx, chromedp.WaitVisible(chromedp.CSS(`#wf-rows .row[data-row="9999"]`)))
	})

	t.Run("clicking an exemplar opens its trace", func(t *testing.T) {
		ctx := sub(t)
		open(t, ctx, base+"/operation?service="+slowSvc+"&operation="+slowOp+"&range=1h", "#chart-duration")
		shot(t, ctx, "operation")
		attr, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#chart-duration a.exemplar"), "data-trace-id"))
		if err != nil || attr.Value == "" {
			t.Fatalf("exemplar: %+v %v", attr, err)
		}
		// A person's click at the point's position (SVG elements have no
		// box model for an element click).
		xy := eval[[]float64](t, ctx, `(() => { const r = document.querySelector("#chart-duration a.exemplar circle").getBoundingClientRect(); return [r.x + r.width/2, r.y + r.height/2] })()`)
		do(t, ctx, chromedp.MouseClickXY(xy[0], xy[1]))
		do(t, ctx, chromedp.WaitVisible(chromedp.CSS(waterfallReady)))
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil || !strings.HasSuffix(loc, "/trace/"+attr.Value) {
			t.Errorf("clicked exemplar %q, landed on %s (%v)", attr.Value, loc, err)
		}
	})

	t.Run("the shard filter narrows the slowest list", func(t *testing.T) {
		ctx := sub(t)
		open(t, ctx, base+"/traces?range=1h", "#traces")
		all := eval[int](t, ctx, `document.querySelectorAll("#traces tbody tr").length`)
		shot(t, ctx, "traces")
		do(t, ctx,
			chromedp.SetValue(chromedp.CSS(`form.filters input[name="shard"]`), "3"),
			chromedp.Submit(chromedp.CSS(`form.filters input[name="shard"]`)),
			chromedp.WaitVisible(chromedp.CSS(`form.filters input[name="shard"][value="3"]`)),
		)
		shard3 := eval[int](t, ctx, `document.querySelectorAll("#traces tbody tr").length`)
		if all != pageSize || shard3 != demoTraces/4 {
			t.Errorf("rows: %d unfiltered (want a full page of %d), %d with shard=3 (want %d)", all, pageSize, shard3, demoTraces/4)
		}
		for _, tg := range eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#traces tbody td.tags")).map(td => td.textContent)`) {
			if !strings.Contains(tg, "shard=3") {
				t.Errorf("row with tags %q in the shard=3 list", tg)
			}
		}
	})

	t.Run("services and the service graph", func(t *testing.T) {
		ctx := sub(t)
		open(t, ctx, base+"/services?range=1h", "#graph svg")
		services := eval[int](t, ctx, `document.querySelectorAll("#services h3").length`)
		edges := eval[int](t, ctx, `document.querySelectorAll("#graph g.edge").length`)
		// frontend→api, api→auth, api→cache, api→inventory, api→db, inventory→db, xss→db
		if services < 7 || edges != 7 {
			t.Errorf("%d services, %d edges", services, edges)
		}
		shot(t, ctx, "services")
	})

	t.Run("markup in span data renders as text", func(t *testing.T) {
		ctx := sub(t)
		open(t, ctx, base+"/trace/"+xssID.String(), waterfallReady)
		root := `#wf-rows .row[data-span-id="` + xssTrace().Trace.Spans[0].SpanID.String() + `"]`
		name := text(t, ctx, root+" .opname")
		click(t, ctx, root)
		do(t, ctx, chromedp.WaitVisible(chromedp.CSS("#details")))
		tags := text(t, ctx, "#d-tags")
		injected := eval[int](t, ctx, `document.querySelectorAll("main img, main b, #details img, #details b, main script:not(#trace-data)").length`)
		if name != xssOp || !strings.Contains(tags, xssTag) || injected != 0 {
			t.Errorf("operation %q, tags %q, %d injected elements", name, tags, injected)
		}
		for _, path := range []string{"/?range=1h", "/traces?range=1h&maxDuration=60ms", "/services?range=1h"} {
			open(t, ctx, base+path, "main")
			txt := text(t, ctx, "main")
			n := eval[int](t, ctx, `document.querySelectorAll("main img, main b, main script").length`)
			if !strings.Contains(txt, xssOp) || n != 0 {
				t.Errorf("%s: the operation %q is not shown as text, or %d elements were injected", path, xssOp, n)
			}
		}
	})
}
