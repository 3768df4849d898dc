package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/olivere/elastic/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
)

// Failure is a document Elasticsearch rejected for a reason retrying cannot
// fix (a mapping error, a document too large, ...).
type Failure struct {
	Index, ID string
	Kind      string          // span, service, trace, rollup or edge
	Doc       json.RawMessage // the document as sent
	Status    int             // HTTP status of the item (0 when the whole request failed)
	Reason    string          // Elasticsearch's error type and reason
}

// DeadLetter receives documents that can never be written. When it returns
// nil the writer counts them as handled (failures_total) and the write
// succeeds, so callers may commit their offsets; when it returns an error the
// write fails (transiently: it may be retried); when no DeadLetter is
// configured the write fails with an error wrapping storage.ErrPermanent.
type DeadLetter interface {
	DeadLetter(ctx context.Context, failures []Failure) error
}

// doc is one bulk index action.
type doc struct {
	kind, index, id string
	cond            cond
	version         int64 // the external version of ifNotOlder and ifNewer
	body            json.RawMessage
	service         serviceKey // of a service document: its key in Store.services
}

// cond says when a doc replaces a stored document with its ID. A doc that
// does not (409) is not written and counts as success: the store has it
// (tracepipe_es_stale_versions_total).
type cond uint8

const (
	always     cond = iota // plain index: replaces whatever is stored
	ifNotOlder             // version_type=external_gte: an equal or newer version replaces
	ifNewer                // version_type=external: only a strictly newer version replaces
	ifMissing              // op_type=create: never replaces
)

// versioned is the cond of a normal (not fill) write of a document carrying
// version v: unversioned (0) documents replace whatever is stored.
func versioned(v int64) cond {
	if v > 0 {
		return ifNotOlder
	}
	return always
}

// request is one caller's write: resolved (err sent on done) once every doc
// is acknowledged or dead-lettered, or failed.
type request struct {
	docs []doc
	done chan error // buffered 1
}

type metrics struct {
	bulkRequests *prometheus.CounterVec
	docsWritten  *prometheus.CounterVec
	retries      *prometheus.CounterVec
	failures     *prometheus.CounterVec
	conflicts    prometheus.Counter
	latency      prometheus.Histogram
	pending      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bulkRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tracepipe_es_bulk_requests_total", Help: "Bulk requests sent to Elasticsearch, by result (ok, error)."}, []string{"result"}),
		docsWritten:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tracepipe_es_docs_written_total", Help: "Documents acknowledged by Elasticsearch, by kind (span, service, trace, rollup, edge)."}, []string{"kind"}),
		retries:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tracepipe_es_retries_total", Help: "Documents resent after a transient failure, by reason (429, 5xx, connection, timeout)."}, []string{"reason"}),
		failures:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tracepipe_es_failures_total", Help: "Documents rejected for good (dead-lettered or failed), by Elasticsearch error type."}, []string{"reason"}),
		conflicts:    prometheus.NewCounter(prometheus.CounterOpts{Name: "tracepipe_es_stale_versions_total", Help: "Documents not written because the store has them: a newer trace version or a rollup of a later partials-log position, and under fill writes (replay) an equal trace version or any document of the same ID."}),
		latency:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tracepipe_es_bulk_duration_seconds", Help: "Latency of one bulk request.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		pending:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "tracepipe_es_pending_docs", Help: "Documents accepted by the writer and not yet acknowledged."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.bulkRequests, m.docsWritten, m.retries, m.failures, m.conflicts, m.latency, m.pending} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// bulkWriter batches the docs of concurrent requests into bulk requests by
// size (BatchDocs, BatchBytes) and time (FlushInterval after the first doc
// of a batch) and sends them from Workers goroutines.
//
// Bounds: at most QueueRequests requests wait to be batched (callers block
// in submit, honouring their context, when it is full) and at most Workers
// batches are in flight plus one being filled.
type bulkWriter struct {
	c       *elastic.Client
	cfg     Config
	m       *metrics
	log     *slog.Logger
	in      chan *request
	batches chan []*request
	stop    context.Context // cancelled after Config.CloseTimeout once Close starts
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	mu      sync.RWMutex
	closed  bool
}

var errClosed = errors.New("elasticsearch writer is closed")

func newBulkWriter(c *elastic.Client, cfg Config, m *metrics, log *slog.Logger) *bulkWriter {
	w := &bulkWriter{c: c, cfg: cfg, m: m, log: log, in: make(chan *request, cfg.QueueRequests), batches: make(chan []*request)}
	w.stop, w.cancel = context.WithCancel(context.Background())
	w.wg.Add(1 + cfg.Workers)
	go w.batchLoop()
	for i := 0; i < cfg.Workers; i++ {
		go w.sendLoop()
	}
	return w
}

// submit hands docs to the writer and waits for their acknowledgement.
// If ctx ends first it returns ctx.Err(); the docs may still be written
// (writes are idempotent).
func (w *bulkWriter) submit(ctx context.Context, docs []doc) error {
	if len(docs) == 0 {
		return nil
	}
	r := &request{docs: docs, done: make(chan error, 1)}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return errClosed
	}
	select {
	case w.in <- r:
		w.m.pending.Add(float64(len(docs)))
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops accepting requests, sends everything accepted (retrying for
// at most Config.CloseTimeout), and waits for the goroutines.
func (w *bulkWriter) close() {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		close(w.in)
		w.mu.Unlock()
		t := time.AfterFunc(w.cfg.CloseTimeout, w.cancel)
		w.wg.Wait()
		t.Stop()
		w.cancel()
	})
}

func (w *bulkWriter) batchLoop() {
	defer w.wg.Done()
	defer close(w.batches)
	var (
		batch       []*request
		docs, bytes int
		timer       *time.Timer
		timeout     <-chan time.Time
	)
	flush := func() {
		if len(batch) > 0 {
			w.batches <- batch
		}
		batch, docs, bytes = nil, 0, 0
		if timer != nil {
			timer.Stop()
			timer, timeout = nil, nil
		}
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case r, ok := <-w.in:
			if !ok {
				flush()
				return
			}
			batch = append(batch, r)
			docs += len(r.docs)
			for _, d := range r.docs {
				bytes += len(d.body)
			}
			if docs >= w.cfg.BatchDocs || bytes >= w.cfg.BatchBytes {
				flush()
			} else if timer == nil {
				timer = time.NewTimer(w.cfg.FlushInterval)
				timeout = timer.C
			}
		case <-timeout:
			timer, timeout = nil, nil
			flush()
		}
	}
}

func (w *bulkWriter) sendLoop() {
	defer w.wg.Done()
	for batch := range w.batches {
		w.sendBatch(batch)
	}
}

// sendBatch writes every doc of the batch's requests, in chunks of at most
// BatchDocs/BatchBytes, then resolves each request.
func (w *bulkWriter) sendBatch(batch []*request) {
	errs := make([]error, len(batch))
	var chunk []doc
	var owner []int
	size := 0
	send := func() {
		if len(chunk) == 0 {
			return
		}
		for i, err := range w.sendChunk(chunk) {
			if err != nil && errs[owner[i]] == nil {
				errs[owner[i]] = err
			}
		}
		chunk, owner, size = chunk[:0], owner[:0], 0
	}
	for ri, r := range batch {
		for _, d := range r.docs {
			if len(chunk) >= w.cfg.BatchDocs || (size > 0 && size+len(d.body) > w.cfg.BatchBytes) {
				send()
			}
			chunk = append(chunk, d)
			owner = append(owner, ri)
			size += len(d.body)
		}
	}
	send()
	for i, r := range batch {
		w.m.pending.Sub(float64(len(r.docs)))
		r.done <- errs[i]
	}
}

// sendChunk sends one bulk request, resending transient failures with
// exponential backoff (at most MaxRetries times), and returns each doc's
// final error (nil: written, stale, or dead-lettered).
func (w *bulkWriter) sendChunk(docs []doc) []error {
	errs := make([]error, len(docs))
	todo := make([]int, len(docs))
	for i := range todo {
		todo[i] = i
	}
	var dead []Failure
	var deadIdx []int
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt > 0 {
			if attempt > w.cfg.MaxRetries {
				for _, i := range todo {
					errs[i] = fmt.Errorf("gave up after %d retries: %w", w.cfg.MaxRetries, errs[i])
				}
				break
			}
			if !w.sleep(attempt) {
				for _, i := range todo {
					errs[i] = fmt.Errorf("bulk index %s/%s: writer closed while retrying: %w", docs[i].index, docs[i].id, errs[i])
				}
				break
			}
		}
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(w.stop, w.cfg.RequestTimeout)
		resp, err := w.bulk(ctx, docs, todo)
		cancel()
		w.m.latency.Observe(time.Since(t0).Seconds())
		if err != nil {
			w.m.bulkRequests.WithLabelValues("error").Inc()
			reason, transient := classify(err)
			if w.stop.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				// Our own request timeout, not Close: the documents are
				// idempotent (fixed IDs, external versions), so resending is safe.
				reason, transient = "timeout", true
			}
			if transient {
				w.m.retries.WithLabelValues(reason).Add(float64(len(todo)))
				w.log.Warn("bulk request failed, retrying", "docs", len(todo), "attempt", attempt+1, "err", logerr.Line(err))
				for _, i := range todo {
					errs[i] = fmt.Errorf("bulk request: %w", err)
				}
				continue
			}
			for _, i := range todo {
				dead = append(dead, Failure{Index: docs[i].index, ID: docs[i].id, Kind: docs[i].kind, Doc: docs[i].body, Reason: err.Error()})
				deadIdx = append(deadIdx, i)
			}
			break
		}
		if !resp.Errors {
			// Every document written (a conflict or any failure sets errors).
			w.m.bulkRequests.WithLabelValues("ok").Inc()
			for _, i := range todo {
				errs[i] = nil
				w.m.docsWritten.WithLabelValues(docs[i].kind).Inc()
			}
			todo = nil
			break
		}
		w.m.bulkRequests.WithLabelValues("ok").Inc()
		var again []int
		for k, item := range resp.Items {
			if k >= len(todo) {
				break
			}
			i := todo[k]
			res := item["index"]
			if res == nil {
				res = item["create"] // the result of an op_type=create action
			}
			switch {
			case res == nil:
				again = append(again, i)
				errs[i] = errors.New("bulk response has no result for the document")
			case res.Status >= 200 && res.Status < 300:
				errs[i] = nil
				w.m.docsWritten.WithLabelValues(docs[i].kind).Inc()
			case res.Status == 409 && docs[i].cond != always:
				// The store has it: a newer version (ifNotOlder), an equal or
				// newer one (ifNewer), or any document of the ID (ifMissing).
				errs[i] = nil
				w.m.conflicts.Inc()
			case res.Status == 429 || res.Status >= 500:
				reason := "5xx"
				if res.Status == 429 {
					reason = "429"
				}
				w.m.retries.WithLabelValues(reason).Inc()
				again = append(again, i)
				errs[i] = fmt.Errorf("bulk index %s/%s: status %d: %s", docs[i].index, docs[i].id, res.Status, details(res.Error))
			default:
				dead = append(dead, Failure{Index: docs[i].index, ID: docs[i].id, Kind: docs[i].kind, Doc: docs[i].body, Status: res.Status, Reason: details(res.Error)})
				deadIdx = append(deadIdx, i)
			}
		}
		if len(resp.Items) < len(todo) {
			again = append(again, todo[len(resp.Items):]...)
		}
		todo = again
	}
	if len(dead) > 0 {
		for _, f := range dead {
			w.m.failures.WithLabelValues(reasonLabel(f)).Inc()
		}
		var err error
		if w.cfg.DeadLetter == nil {
			err = errors.New("no dead-letter configured")
		} else {
			err = w.cfg.DeadLetter.DeadLetter(w.stop, dead)
		}
		for k, i := range deadIdx {
			if w.cfg.DeadLetter == nil {
				// Rejected for good and nowhere to keep it: the caller
				// (the indexer) dead-letters the whole record.
				errs[i] = fmt.Errorf("index %s/%s: %w (status %d: %s), no dead-letter configured", dead[k].Index, dead[k].ID, storage.ErrPermanent, dead[k].Status, dead[k].Reason)
			} else if err != nil {
				errs[i] = fmt.Errorf("index %s/%s rejected (status %d: %s), dead-letter: %v", dead[k].Index, dead[k].ID, dead[k].Status, dead[k].Reason, err)
			} else {
				errs[i] = nil
			}
		}
		w.log.Error("documents rejected by Elasticsearch", "count", len(dead), "first_reason", dead[0].Reason, "dead_letter_err", err)
	}
	return errs
}

// bulkParams keep of a bulk response what sendChunk reads: whether any
// item failed and each item's status and error (not its index, ID,
// version, shards, ...), a fraction of the bytes to send and decode.
var bulkParams = url.Values{"filter_path": {"errors,items.*.status,items.*.error"}}

// bulkResponse is a bulk response filtered by bulkParams.
type bulkResponse struct {
	Errors bool                                   `json:"errors"`
	Items  []map[string]*elastic.BulkResponseItem `json:"items"`
}

// bulk sends docs[todo] in one bulk request. The body is written here, each
// document's JSON as it is, rather than by olivere's BulkService, which
// encodes every action twice (once to estimate its size) and re-encodes the
// documents; the items are decoded only when one failed.
func (w *bulkWriter) bulk(ctx context.Context, docs []doc, todo []int) (*bulkResponse, error) {
	n := 0
	for _, i := range todo {
		n += len(docs[i].body) + len(docs[i].index) + len(docs[i].id) + 96
	}
	b := make([]byte, 0, n)
	for _, i := range todo {
		d := &docs[i]
		op := `{"index":{"_index":`
		if d.cond == ifMissing {
			op = `{"create":{"_index":`
		}
		b = append(b, op...)
		b = dbmodel.AppendJSONString(b, d.index)
		b = append(b, `,"_id":`...)
		b = dbmodel.AppendJSONString(b, d.id)
		switch d.cond {
		case ifNotOlder:
			b = append(b, `,"version_type":"external_gte","version":`...)
			b = strconv.AppendInt(b, d.version, 10)
		case ifNewer:
			b = append(b, `,"version_type":"external","version":`...)
			b = strconv.AppendInt(b, d.version, 10)
		}
		b = append(b, "}}\n"...)
		b = append(b, d.body...)
		b = append(b, '\n')
	}
	params := bulkParams
	if w.cfg.Refresh != "" {
		params = url.Values{"filter_path": bulkParams["filter_path"], "refresh": {w.cfg.Refresh}}
	}
	// The body as a string without copying it: b is not changed after this.
	res, err := w.c.PerformRequest(ctx, elastic.PerformRequestOptions{
		Method: "POST", Path: "/_bulk", Params: params, Body: unsafe.String(unsafe.SliceData(b), len(b)), ContentType: "application/x-ndjson",
	})
	if err != nil {
		return nil, err
	}
	// filter_path leaves "errors" first: a response without failures is
	// recognised without decoding its items.
	if bytes.HasPrefix(res.Body, []byte(`{"errors":false`)) {
		return &bulkResponse{}, nil
	}
	r := &bulkResponse{}
	if err := json.Unmarshal(res.Body, r); err != nil {
		return nil, fmt.Errorf("decode bulk response: %w", err)
	}
	return r, nil
}

// sleep waits the backoff of the attempt; false if the writer is stopping.
func (w *bulkWriter) sleep(attempt int) bool {
	d := w.cfg.RetryBackoff << min(attempt-1, 16)
	if d > w.cfg.MaxRetryBackoff || d <= 0 {
		d = w.cfg.MaxRetryBackoff
	}
	d = d/2 + rand.N(d/2+1) // jitter: [d/2, d]
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stop.Done():
		return false
	}
}

// classify says whether a whole-request error is worth retrying.
func classify(err error) (reason string, transient bool) {
	var e *elastic.Error
	if errors.As(err, &e) {
		switch {
		case e.Status == 429:
			return "429", true
		case e.Status >= 500:
			return "5xx", true
		}
		return fmt.Sprint(e.Status), false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "cancelled", false
	}
	return "connection", true
}

func details(e *elastic.ErrorDetails) string {
	if e == nil {
		return "unknown error"
	}
	s := e.Type + ": " + e.Reason
	if e.CausedBy != nil {
		if r, ok := e.CausedBy["reason"].(string); ok {
			s += " (caused by: " + r + ")"
		}
	}
	return s
}

// reasonLabel bounds the failure reason label to Elasticsearch's error type.
func reasonLabel(f Failure) string {
	for i := 0; i < len(f.Reason); i++ {
		if f.Reason[i] == ':' {
			if i > 64 {
				break
			}
			return f.Reason[:i]
		}
	}
	if f.Status != 0 {
		return fmt.Sprint(f.Status)
	}
	return "request"
}
